"""What every step does with an execution's row: lock it, audit its move, and send the
wake-up that follows once the move commits (the django-q2 task or the agent's long poll
is only a wake-up call: the row is the truth)."""

from typing import Any

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from governance.audit.log import PendingEvent, event
from remediation import wakeups
from remediation.models import Execution


def audit_event(
    execution: Execution, actor: str, action: str, summary: str, **data: Any
) -> PendingEvent:
    """The audit event of a step on `execution`, with its state and runbook."""
    return event(
        actor,
        action,
        execution,
        summary,
        ticket_id=execution.ticket.ticket_id,
        data={"state": execution.state, "runbook": execution.runbook.name, **data},
    )


def locked_execution(execution_id: int) -> Execution | None:
    """The execution under its row lock, with what the steps read of it; None if gone."""
    return (
        Execution.objects.select_for_update(of=("self",))
        .select_related(
            "ticket", "host", "runbook", "approval_request", "decision", "handoff_target"
        )
        .filter(pk=execution_id)
        .first()
    )


def enqueue_after_commit(execution_id: int) -> None:
    """Once this commits, a worker is asked to dispatch the execution."""

    # robust: a broker that is down must not turn the committed request into a 500. The
    # row is marked enqueued only once the broker took the task, so one it refused is
    # found seconds later (remediation.executions.sweeps.requeue_lost).
    transaction.on_commit(lambda: enqueue_dispatch(execution_id), robust=True)


def enqueue_dispatch(execution_id: int) -> None:
    """Ask a worker to dispatch the execution, and note when the broker took the task."""
    async_task("remediation.tasks.dispatch_execution", execution_id)
    Execution.objects.filter(pk=execution_id).update(enqueued_at=timezone.now())


def announce_after_commit(execution: Execution) -> None:
    """The action is ready for whoever runs it, once this commits: the host's agent's long
    poll wakes, or the hand-off task takes it to its automation system."""
    if execution.handoff_target_id is not None:
        execution_id = execution.pk
        transaction.on_commit(
            lambda: async_task("remediation.tasks.hand_off_execution", execution_id),
            robust=True,  # the sweeper times out what was never handed off
        )
        return
    host_id = execution.host_id
    transaction.on_commit(lambda: wakeups.announce([host_id]), robust=True)
