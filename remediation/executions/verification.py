"""Verification: an execution that ran is verifying until fresh metrics from its host say
the problem is gone (it succeeds and its ticket is resolved) or still there after enough
samples (it fails and its rollback starts), or a monitoring system says the problem ended.
Fresh is on the server's clock (scoring.samples), never the agent's. The execution keeps
what judged it (verified_by). Each expects the caller's transaction."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from feedback import patterns
from governance.audit.log import PendingEvent
from governance.audit.tickets import move_ticket
from remediation.choices import ExecutionState, TicketStatus, VerifiedBy
from remediation.executions.ending import after_ending, count_failed_attempt, start_rollback
from remediation.executions.rows import audit_event
from remediation.models import Execution, Host, Ticket
from scoring.models import MetricSample
from scoring.samples import (
    ClassifiedSample,
    clock_is_off,
    describe_skew,
    observed_at,
    reading_is_fresh,
    sample_shows_problem,
)

# How a resolved ticket says what verified its fix.
VERIFIED_BY_WORDS = {
    VerifiedBy.READINGS: "the host's fresh metrics",
    VerifiedBy.ALERT: "the monitoring system's resolved alert",
}


def verify_with_samples(
    host: Host, samples: Sequence[ClassifiedSample], now: datetime, events: list[PendingEvent]
) -> None:
    """Fresh metrics decide verifying executions: healed -> succeeded, else failed and rolled back.

    On the server's clock: a reading counts when the server received it after the fix
    started and it was taken (its stamp corrected by the host's measured skew) after the
    fix started and within WARDEN_READING_MAX_AGE_SECONDS of `now`. A host's clock
    ahead or behind changes nothing; a reading buffered from before the fix counts for
    nothing. Expects the caller's transaction (the metrics request).
    """
    executions = list(
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook")
        .filter(host=host, state=ExecutionState.VERIFYING)
    )
    clock = _clock_evidence(host)
    for execution in executions:
        category = execution.runbook.category
        fresh = [s for s in samples if counts_for(s, execution, now)]
        for sample in sorted(fresh, key=lambda s: (observed_at(s), s.taken_at)):
            execution.verify_samples_seen += 1
            if not sample_shows_problem(sample, category):
                _succeed(
                    execution,
                    now,
                    events,
                    f"verified: {execution.host.name} healthy for {category} "
                    f"after {execution.runbook.action}{clock.get('note', '')}",
                    verified_by=VerifiedBy.READINGS,
                    sample_id=sample.pk,
                    **clock.get("data", {}),
                )
                break
            if execution.verify_samples_seen >= settings.WARDEN_VERIFY_SAMPLES:
                fail_verification(
                    execution,
                    now,
                    events,
                    f"{execution.verify_samples_seen} fresh samples still show it"
                    f"{clock.get('note', '')}",
                    judged_by=VerifiedBy.READINGS,
                    **clock.get("data", {}),
                )
                break
        execution.save()


def counts_for(sample: ClassifiedSample, execution: Execution, now: datetime) -> bool:
    """May this reading verify `execution`: received and taken, on the server's clock, after
    the fix started, and fresh at `now`?"""
    started = execution.started_at
    if started is not None and (sample.received_at < started or observed_at(sample) < started):
        return False
    return reading_is_fresh(sample, now)


def _clock_evidence(host: Host) -> dict[str, Any]:
    """What a verdict says of a host whose clock is flagged: judged on the server's time."""
    if not clock_is_off(host.clock_skew_seconds):
        return {}
    return {
        "note": f" (host clock {describe_skew(host.clock_skew_seconds)}; judged on server time)",
        "data": {"clock_skew_seconds": host.clock_skew_seconds},
    }


def verify_with_resolved_alert(
    ticket: Ticket,
    started_at: datetime,
    ended_at: datetime,
    evidence: str,
    now: datetime,
    events: list[PendingEvent],
    **data: Any,
) -> int:
    """A monitoring system says the ticket's problem, which began at `started_at`, ended at
    `ended_at`: the ticket's executions waiting to be verified succeed on it, under their
    locks, only when the alert spans every one of them (it began before each fix started,
    ended after it started and not ahead of Warden's clock) and the host's newest reading
    since the fixes does not still show the problem: its readings outweigh an alert's word.
    The caller checked that the alert is about the ticket's host and category. Marked
    verified by the alert: it resolves the ticket, but earns the pattern's automation no
    credit (only the host's own readings do). Returns how many. Expects the caller's
    transaction."""
    tolerance = timedelta(seconds=settings.WARDEN_ALERT_CLOCK_TOLERANCE_SECONDS)
    if ended_at > now + tolerance:
        return 0
    executions = list(
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook", "host")
        .filter(ticket=ticket, state=ExecutionState.VERIFYING, started_at__lte=ended_at)
    )
    if not executions or any(e.started_at < started_at for e in executions):
        return 0
    since_fix = (
        MetricSample.objects.filter(
            host=ticket.host, received_at__gte=min(e.started_at for e in executions)
        )
        .order_by("-taken_at")
        .first()
    )
    if since_fix is not None and sample_shows_problem(since_fix, ticket.category):
        return 0
    for execution in executions:
        _succeed(
            execution, now, events, f"verified: {evidence}", verified_by=VerifiedBy.ALERT, **data
        )
        execution.save()
    return len(executions)


def _succeed(
    execution: Execution,
    now: datetime,
    events: list[PendingEvent],
    summary: str,
    *,
    verified_by: VerifiedBy,
    **evidence: Any,
) -> None:
    """Verified: the execution succeeded, its ticket is resolved, and the pattern learns it."""
    execution.move_to(ExecutionState.SUCCEEDED, now)
    execution.finished_at = now
    execution.verified_by = verified_by
    events.append(
        audit_event(
            execution,
            "system",
            "execution.succeeded",
            summary,
            verified_by=verified_by.value,
            **evidence,
        )
    )
    ticket = execution.ticket
    ticket.resolution = f"{execution.runbook.title}: verified by {VERIFIED_BY_WORDS[verified_by]}."
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
        patterns.record_automatic_success(ticket, verified_by=verified_by)
    patterns.record_outcome(ticket, resolved=True)
    after_ending(execution, now, events)


def fail_verification(
    execution: Execution,
    now: datetime,
    events: list[PendingEvent],
    why: str,
    *,
    judged_by: VerifiedBy,
    **evidence: Any,
) -> None:
    """The host still shows the problem (judged by its readings) or showed nothing healthy
    in time (by the deadline): the execution failed, counts against its automation, and
    its rollback starts."""
    execution.move_to(ExecutionState.FAILED, now)
    execution.finished_at = now
    execution.verified_by = judged_by
    events.append(
        audit_event(
            execution,
            "system",
            "execution.failed",
            f"verification failed: {why}",
            verified_by=judged_by.value,
            **evidence,
        )
    )
    count_failed_attempt(execution, now, events)
    start_rollback(execution, events, f"verification failed: {why}")
