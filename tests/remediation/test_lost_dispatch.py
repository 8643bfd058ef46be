"""A dispatch task that was lost is found in seconds: one the broker refused as the change
committed, one a dead cluster had taken, one that failed on its database connection. A
second delivery is harmless (the row is the truth), so the sweeper may err towards it."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone
from django_q.tasks import async_task

from remediation import tasks
from remediation.executions import queueing
from remediation.executions.sweeps import requeue_lost
from remediation.models import Execution

pytestmark = pytest.mark.usefixtures("trusting_policies")


def broker(monkeypatch, enqueue) -> None:
    """The broker as the rows module sees it (monkeypatch.undo would also undo the tests'
    inline tasks, tests/conftest.py)."""
    monkeypatch.setattr("remediation.executions.rows.async_task", enqueue)


def refused(*args, **kwargs):
    raise ConnectionError("broker unreachable")


def lost(*args, **kwargs):
    return None


def test_a_task_the_broker_refused_is_enqueued_again_seconds_later(agent, monkeypatch):
    # given an execution queued while the broker was down
    broker(monkeypatch, refused)
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    assert (execution.state, execution.enqueued_at) == ("queued", None)  # not taken
    broker(monkeypatch, async_task)

    # then it is not taken for lost while its enqueue may still be on its way, and is after
    assert requeue_lost(execution.created_at + timedelta(seconds=1)) == 0
    assert requeue_lost(execution.created_at + timedelta(seconds=3)) == 1

    # and, with tasks run at once here, it is dispatched
    assert Execution.objects.get().state == "dispatched"


def test_a_task_taken_but_never_run_is_enqueued_again(agent, settings, monkeypatch):
    # given an execution whose task the broker took, then lost (a cluster killed with it)
    broker(monkeypatch, lost)
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    assert execution.state == "queued" and execution.enqueued_at is not None
    broker(monkeypatch, async_task)
    lost_after = timedelta(seconds=settings.WARDEN_REQUEUE_AFTER_SECONDS)

    # then it waits for its task a few seconds, not minutes, and is then enqueued again
    assert requeue_lost(execution.enqueued_at + lost_after / 2) == 0
    assert requeue_lost(execution.enqueued_at + lost_after) == 1
    assert Execution.objects.get().state == "dispatched"
    assert settings.WARDEN_REQUEUE_AFTER_SECONDS <= 15


# As in a worker: no test transaction around the task (its retry closes the connection).
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_dispatch_that_meets_a_connection_error_is_tried_again(agent, monkeypatch):
    # given an execution waiting for its dispatch, and a first attempt that meets a
    # connection PostgreSQL closed when it restarted
    broker(monkeypatch, lost)
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    real = queueing.dispatch_execution
    attempts = []

    def restarting_database(execution_id, now):
        attempts.append(now)
        if len(attempts) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(execution_id, now)

    monkeypatch.setattr(queueing, "dispatch_execution", restarting_database)
    monkeypatch.setattr(tasks, "DISPATCH_RETRY_DELAYS", (0.0, 0.0))

    # when the worker runs the task, then it dispatches on the second attempt
    assert tasks.dispatch_execution(execution.pk) == "dispatched"
    assert len(attempts) == 2


# As in a worker: no test transaction around the task (its retry closes the connection).
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_dispatch_that_keeps_failing_raises_and_leaves_the_row_for_the_sweeper(
    agent, monkeypatch
):
    broker(monkeypatch, lost)
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()

    def down(execution_id, now):
        raise OperationalError("connection refused")

    monkeypatch.setattr(queueing, "dispatch_execution", down)
    monkeypatch.setattr(tasks, "DISPATCH_RETRY_DELAYS", (0.0, 0.0))

    with pytest.raises(OperationalError):
        tasks.dispatch_execution(execution.pk)
    assert Execution.objects.get().state == "queued"
    assert requeue_lost(timezone.now() + timedelta(minutes=1)) == 1
