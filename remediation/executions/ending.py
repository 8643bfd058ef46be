"""How an execution ends, whichever step ends it: cancelled, failed with its rollback
started, or its rollback failed; and what every ending sets off in the same transaction:
held work looked at again, a failed automatic fix counted against its automation, and the
post-action review of what Warden did by itself. The caller holds the execution's lock."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django_q.tasks import async_task

from feedback import patterns
from governance.audit.log import PendingEvent
from governance.audit.tickets import escalate_ticket, fix_did_not_hold
from governance.promotions.demotions import demote_after_failure
from governance.promotions.reviews import open_review
from remediation.choices import ExecutionState
from remediation.executions.rows import announce_after_commit, audit_event
from remediation.models import Execution


def after_ending(execution: Execution, now: datetime, events: list[PendingEvent]) -> None:
    """An execution reached its end (the caller has moved it and audited the move).

    Work held for the blast radius or the rate limit may have room once this commits, so
    it is looked at then, not at the next sweep; and what Warden did by itself at L2 or L3
    gets its post-action review (governance.promotions.reviews)."""
    if Execution.objects.filter(state=ExecutionState.HELD, hold_until__isnull=False).exists():
        transaction.on_commit(
            lambda: async_task("remediation.tasks.release_held_executions"), robust=True
        )
    events += open_review(execution, now)


def cancel_locked(
    execution: Execution,
    now: datetime,
    events: list[PendingEvent],
    actor: str,
    reason: str,
    *,
    escalate: bool = True,
    ran: bool = True,
    **data: Any,
) -> None:
    """Cancel an unfinished execution and hand its ticket to people (caller holds the lock).

    `ran`: False when it is known never to have started anywhere (the agent refused it or
    never started it, its hand-off was refused): it has no start, and counts as no failed
    fix, in the track records as here."""
    was = execution.state
    execution.move_to(ExecutionState.CANCELLED, now)
    execution.finished_at = now
    execution.lease_expires_at = None
    execution.cancel_reason = reason[:500]
    if not ran:
        execution.started_at = None
        data = {**data, "ran": False}
    execution.save(
        update_fields=[
            "state",
            "state_changed_at",
            "finished_at",
            "lease_expires_at",
            "cancel_reason",
            "started_at",
        ]
    )
    events.append(
        audit_event(
            execution, actor, "execution.cancelled", f"cancelled: {reason}", was=was, **data
        )
    )
    after_ending(execution, now, events)
    if ran and was in (ExecutionState.RUNNING, ExecutionState.VERIFYING):
        count_failed_attempt(execution, now, events)  # it ran, and nothing verified it worked
    if escalate:
        events += escalate_ticket(execution.ticket, f"execution cancelled ({was}): {reason}")


def cancel_for_change(
    execution: Execution,
    now: datetime,
    events: list[PendingEvent],
    cause: str,
    *,
    actor: str = "system",
    escalate: bool = True,
) -> None:
    """Cancel a locked unfinished execution because what it relied on changed (`cause`)."""
    cancel_locked(execution, now, events, actor, cause, escalate=escalate)


def count_failed_attempt(execution: Execution, now: datetime, events: list[PendingEvent]) -> None:
    """A failed automatic fix counts against its pattern's automation, whatever happens next,
    and may cost its policy and pattern their autonomy at once (governance.promotions.demotions)."""
    if execution.approval_request_id is None:
        patterns.record_automatic_attempt(execution.ticket, succeeded=False)
        demote_after_failure(execution, now, events)


def start_rollback(execution: Execution, events: list[PendingEvent], why: str) -> None:
    """After a failure: dispatch the rollback if there is one, and hand the ticket to people
    as partially remediated (the seed's status for a fix that did not hold)."""
    runbook = execution.runbook
    if runbook.reversible and runbook.rollback_action:
        execution.move_to(ExecutionState.ROLLBACK_PENDING, execution.finished_at)
        announce_after_commit(execution)
        events.append(
            audit_event(
                execution,
                "system",
                "execution.rollback_pending",
                f"rolling back with {runbook.rollback_action}: {why}",
            )
        )
    events += fix_did_not_hold(execution.ticket, f"{runbook.name} failed: {why}")
    if execution.state == ExecutionState.FAILED:  # nothing to roll back: it ends failed
        after_ending(execution, execution.finished_at, events)


def fail_rollback(
    execution: Execution, now: datetime, events: list[PendingEvent], actor: str, summary: str
) -> None:
    """A rollback that cannot be known to have run: it ends failed, audited, and a person
    must check the host (the caller holds the lock)."""
    execution.move_to(ExecutionState.ROLLBACK_FAILED, now)
    execution.finished_at = now
    execution.lease_expires_at = None
    execution.save()
    events.append(audit_event(execution, actor, "execution.rollback_failed", summary))
    events += fix_did_not_hold(execution.ticket, summary)
    after_ending(execution, now, events)
