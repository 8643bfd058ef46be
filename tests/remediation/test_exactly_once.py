"""An execution runs at most once per idempotency key, whatever the queue and the agents do."""

from datetime import timedelta

import pytest
from django.utils import timezone

from remediation.executions import queueing, rows
from remediation.models import Execution
from remediation.tasks import sweep

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def test_a_task_delivered_twice_dispatches_once(agent):
    # given an execution the worker already dispatched
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    assert execution.state == "dispatched"

    # when the queue delivers the same task again
    result = queueing.dispatch_execution(execution.pk, timezone.now())

    # then nothing changes and the agent gets the action once
    assert result == "skipped"
    assert len(agent.take_actions()) == 1
    assert agent.take_actions() == []


def test_a_task_for_a_deleted_row_is_harmless(db):
    assert queueing.dispatch_execution(987654, timezone.now()) == "skipped"


def test_the_same_decision_never_queues_two_executions(agent):
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    events = []
    again = queueing.queue_execution(
        ticket=execution.ticket,
        runbook=execution.runbook,
        idempotency_key=execution.idempotency_key,
        now=timezone.now(),
        events=events,
    )
    assert again.pk == execution.pk
    assert Execution.objects.count() == 1
    assert events == []


def test_a_stale_token_cannot_report(agent):
    # given an action claimed by the agent
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()

    # when a report arrives with an older token
    response = agent.report({**action, "token": action["token"] - 1 or 99})

    # then it is refused and the execution is untouched
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "stale_token"
    assert Execution.objects.get().state == "running"


def test_a_duplicate_report_is_refused(agent):
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    assert agent.report(action).status_code == 200
    second = agent.report(action, ok=False)
    assert second.status_code == 409
    assert Execution.objects.get().state == "verifying"


def test_another_hosts_agent_cannot_report(agent, other_agent):
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    response = other_agent.report(action)
    assert response.status_code == 404
    assert Execution.objects.get().state == "running"


def test_an_expired_lease_is_verified_not_run_again(agent, settings):
    # given an agent that took the action and went silent
    agent.post_metrics(agent.sample("disk"))
    assert len(agent.take_actions()) == 1
    Execution.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    # when the sweeper runs
    with agent.capture(execute=True):
        report = sweep()

    # then the host's next metrics decide, and the action is not handed out again
    assert report["leases_expired"] == 1
    assert Execution.objects.get().state == "verifying"
    assert agent.take_actions() == []
    agent.post_metrics(agent.sample())
    assert Execution.objects.get().state == "succeeded"


def test_the_sweeper_requeues_an_execution_whose_task_vanished(agent, settings, monkeypatch):
    # given a queued execution whose task was lost (e.g. Redis restarted)
    monkeypatch.setattr(rows, "async_task", lambda *args, **kwargs: None)
    agent.post_metrics(agent.sample("disk"))
    assert Execution.objects.get().state == "queued"
    Execution.objects.update(enqueued_at=timezone.now() - timedelta(hours=1))
    monkeypatch.undo()
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)

    # when the sweeper runs
    with agent.capture(execute=True):
        report = sweep()

    # then it is dispatched, once
    assert report["requeued"] == 1
    assert Execution.objects.get().state == "dispatched"
    assert len(agent.take_actions()) == 1


def test_verification_deadline_fails_and_rolls_back(agent):
    agent.post_metrics(agent.sample("cpu"))
    [action] = agent.take_actions()
    agent.report(action)
    Execution.objects.update(verify_deadline=timezone.now() - timedelta(seconds=1))
    report = sweep()
    assert report["verifications_failed"] == 1
    assert Execution.objects.get().state == "rollback_pending"
