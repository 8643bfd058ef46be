"""The sweeper: scheduled every minute, it repairs what crashes and lost tasks leave behind.
It re-enqueues rows whose task vanished, reconciles an expired lease by verifying the
host's fresh metrics (never by running the action again), fails verifications past their
deadline, gives up on whatever waited too long, and releases held work. Safe to run any
number of times."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from governance.audit.log import PendingEvent, append_events
from governance.audit.tickets import fix_did_not_hold
from remediation.choices import EXECUTION_STARTS, ExecutionState, VerifiedBy
from remediation.executions.claims import release_unacknowledged
from remediation.executions.ending import after_ending, cancel_locked, fail_rollback
from remediation.executions.holds import release_held_executions
from remediation.executions.rows import audit_event, enqueue_dispatch
from remediation.executions.verification import fail_verification
from remediation.models import Execution


@dataclass(frozen=True)
class SweepReport:
    """How many of each repair one sweep made."""

    requeued: int = 0
    leases_expired: int = 0
    verifications_failed: int = 0
    released: int = 0
    timed_out: int = 0


def sweep(now: datetime) -> SweepReport:
    """Repair what crashes and lost tasks leave behind. Safe to run any number of times."""
    requeued = requeue_lost(now)
    with transaction.atomic():
        events: list[PendingEvent] = []
        leases = _reconcile_expired_leases(now, events)
        verifications = 0
        for execution in (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .filter(state=ExecutionState.VERIFYING, verify_deadline__lt=now)
        ):
            verifications += 1
            fail_verification(
                execution,
                now,
                events,
                "no healthy sample before the deadline",
                judged_by=VerifiedBy.DEADLINE,
            )
            execution.save()
        timed_out = _time_out_waiting(now, events)
        append_events(events)
    released = release_held_executions(now)
    return SweepReport(requeued, leases, verifications, released, timed_out)


# An execution whose enqueue has not been noted this long after it was queued was never
# taken by the broker (it was down when the change committed): the note follows the commit
# by milliseconds.
NEVER_ENQUEUED_AFTER = timedelta(seconds=2)


def requeue_lost(now: datetime, lost_after: timedelta | None = None) -> int:
    """Enqueue again the queued executions whose dispatch task was lost; how many.

    Lost: never taken by the broker (down when the change committed), or taken longer than
    `lost_after` ago (WARDEN_REQUEUE_AFTER_SECONDS) and still not dispatched: a cluster
    killed with the task in flight, a task that failed on its connection. A dispatch takes
    milliseconds, so a task that slow is taken for lost; if it was only waiting, the second
    delivery finds the row no longer queued and does nothing. The worker's main process
    runs this every few seconds (remediation/management/commands/qcluster.py), the sweeper
    every minute. A broker that refuses a task raises: the rest wait for the next look.
    """
    if lost_after is None:
        lost_after = timedelta(seconds=settings.WARDEN_REQUEUE_AFTER_SECONDS)
    queued = Execution.objects.filter(state=ExecutionState.QUEUED)
    lost = queued.filter(
        Q(enqueued_at__lte=now - lost_after)
        | Q(enqueued_at__isnull=True, created_at__lte=now - NEVER_ENQUEUED_AFTER)
    )
    requeued = 0
    for execution_id in lost.order_by("pk").values_list("pk", flat=True):
        enqueue_dispatch(execution_id)
        requeued += 1
    return requeued


def _reconcile_expired_leases(now: datetime, events: list[PendingEvent]) -> int:
    """A claim whose agent never said it started is offered again (or cancelled after
    enough offers): nothing ran. A run whose lease ran out is verified by the host's
    metrics, never run again; a rollback whose lease ran out failed, and a person must
    check the host."""
    leases = 0
    for execution in (
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook", "host")
        .filter(
            state__in=[*EXECUTION_STARTS, ExecutionState.RUNNING, ExecutionState.ROLLING_BACK],
            lease_expires_at__lt=now,
        )
    ):
        leases += 1
        if execution.state in EXECUTION_STARTS:
            release_unacknowledged(execution, now, events)
            continue
        if execution.state == ExecutionState.RUNNING:
            # The agent said it started, and may or may not have finished: let the host's
            # metrics say.
            execution.move_to(ExecutionState.VERIFYING, now)
            execution.verify_deadline = now + timedelta(
                seconds=settings.WARDEN_VERIFY_TIMEOUT_SECONDS
            )
            summary = "agent lease expired; verifying the host's state instead of re-running"
        else:
            execution.move_to(ExecutionState.ROLLBACK_FAILED, now)
            execution.finished_at = now
            summary = "agent lease expired during rollback; a person must check the host"
        execution.lease_expires_at = None
        execution.save()
        events.append(audit_event(execution, "system", f"execution.{execution.state}", summary))
        if execution.state == ExecutionState.ROLLBACK_FAILED:
            events += fix_did_not_hold(execution.ticket, summary)
            after_ending(execution, now, events)
    return leases


def _time_out_waiting(now: datetime, events: list[PendingEvent]) -> int:
    """Give up on executions waiting past their time for a worker, an agent or a pause."""
    dispatch = timedelta(seconds=settings.WARDEN_DISPATCH_TIMEOUT_SECONDS)
    held = timedelta(seconds=settings.WARDEN_HELD_TIMEOUT_SECONDS)
    limits = {
        ExecutionState.QUEUED: (dispatch, "no worker dispatched it"),
        ExecutionState.DISPATCHED: (dispatch, "the agent did not take it"),
        ExecutionState.ROLLBACK_PENDING: (dispatch, "the agent did not take the rollback"),
        ExecutionState.HELD: (held, "a pause held it"),  # a check's hold: its hold_until
    }
    count = 0
    for execution in (
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook", "host")
        .filter(state=ExecutionState.HELD, hold_until__lt=now)
    ):
        count += 1
        cancel_locked(
            execution, now, events, "system", f"timed out waiting: {execution.hold_reason}"
        )
    for state, (limit, what) in limits.items():
        for execution in (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .filter(state=state, state_changed_at__lt=now - limit)
        ):
            count += 1
            why = f"timed out: {what} within {int(limit.total_seconds())} s"
            if state == ExecutionState.ROLLBACK_PENDING:
                fail_rollback(
                    execution, now, events, "system", f"{why}; a person must check the host"
                )
            else:
                cancel_locked(execution, now, events, "system", why)
    return count
