"""Verification: an execution that ran is verifying until fresh metrics from its host say
the problem is gone (it succeeds and its ticket is resolved) or still there after enough
samples (it fails and its rollback starts), or a monitoring system says the problem ended.
Each expects the caller's transaction."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings

from feedback import patterns
from governance.audit.log import PendingEvent
from governance.audit.tickets import move_ticket
from remediation.choices import ExecutionState, TicketStatus
from remediation.executions.ending import after_ending, count_failed_attempt, start_rollback
from remediation.executions.rows import audit_event
from remediation.models import Execution, Host, Ticket
from scoring.samples import ClassifiedSample, sample_shows_problem


def verify_with_samples(
    host: Host, samples: Sequence[ClassifiedSample], now: datetime, events: list[PendingEvent]
) -> None:
    """Fresh metrics decide verifying executions: healed -> succeeded, else failed and rolled back.

    Expects the caller's transaction (the metrics request).
    """
    executions = list(
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook")
        .filter(host=host, state=ExecutionState.VERIFYING)
    )
    for execution in executions:
        category = execution.runbook.category
        fresh = [
            s for s in samples if execution.started_at is None or s.taken_at >= execution.started_at
        ]
        for sample in sorted(fresh, key=lambda s: s.taken_at):
            execution.verify_samples_seen += 1
            if not sample_shows_problem(sample, category):
                _succeed(
                    execution,
                    now,
                    events,
                    f"verified: {execution.host.name} healthy for {category} "
                    f"after {execution.runbook.action}",
                    sample_id=sample.pk,
                )
                break
            if execution.verify_samples_seen >= settings.WARDEN_VERIFY_SAMPLES:
                fail_verification(
                    execution,
                    now,
                    events,
                    f"{execution.verify_samples_seen} fresh samples still show it",
                )
                break
        execution.save()


def verify_with_resolved_alert(
    ticket: Ticket,
    ended_at: datetime,
    evidence: str,
    now: datetime,
    events: list[PendingEvent],
    **data: Any,
) -> int:
    """A monitoring system says the ticket's problem ended at `ended_at`: the ticket's
    executions waiting to be verified succeed on it, if it ended after they started.
    Returns how many. Expects the caller's transaction."""
    executions = list(
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook", "host")
        .filter(ticket=ticket, state=ExecutionState.VERIFYING, started_at__lte=ended_at)
    )
    for execution in executions:
        _succeed(execution, now, events, f"verified: {evidence}", **data)
        execution.save()
    return len(executions)


def _succeed(
    execution: Execution, now: datetime, events: list[PendingEvent], summary: str, **evidence: Any
) -> None:
    """Verified: the execution succeeded, its ticket is resolved, and the pattern learns it."""
    execution.move_to(ExecutionState.SUCCEEDED, now)
    execution.finished_at = now
    events.append(audit_event(execution, "system", "execution.succeeded", summary, **evidence))
    ticket = execution.ticket
    ticket.resolution = f"{execution.runbook.title}: verified by fresh metrics."
    events.append(
        move_ticket(
            ticket,
            TicketStatus.RESOLVED,
            actor="system",
            summary=f"{ticket.ticket_id} resolved by {execution.runbook.name}",
            now=now,
            also_saved=("resolution",),
        )
    )
    if execution.approval_request_id is None:
        patterns.record_automatic_attempt(ticket, succeeded=True)
    patterns.record_outcome(ticket, resolved=True)
    after_ending(execution, now, events)


def fail_verification(
    execution: Execution, now: datetime, events: list[PendingEvent], why: str
) -> None:
    """The host still shows the problem (or showed nothing healthy in time): the execution
    failed, counts against its automation, and its rollback starts."""
    execution.move_to(ExecutionState.FAILED, now)
    execution.finished_at = now
    events.append(
        audit_event(execution, "system", "execution.failed", f"verification failed: {why}")
    )
    count_failed_attempt(execution, now, events)
    start_rollback(execution, events, f"verification failed: {why}")
