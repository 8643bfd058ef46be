"""The dispatch check under the execution's lock, and the holds it puts on executions.

Before anything hands an execution to whoever runs it (the worker's dispatch, the agent's
claim, the hand-off's claim), the whole check runs again in that transaction: a pause
holds it, a rule that no longer allows it cancels it, a check that time can pass holds it
until it passes or its deadline. release_held_executions puts held work back in the queue
once nothing holds it.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from governance.audit.log import PendingEvent, append_events
from governance.decisions.dispatch import dispatch_check
from governance.pauses.state import active_pauses, pauses_applying
from remediation.choices import ExecutionState
from remediation.executions.ending import cancel_locked
from remediation.executions.rows import audit_event, enqueue_after_commit
from remediation.models import Execution


def may_start(execution: Execution, now: datetime, events: list[PendingEvent]) -> bool:
    """The whole dispatch check, under the execution's lock: a pause holds it, a rule that
    no longer allows it cancels it, a check that time can pass holds it until it passes or
    its deadline (each audited with every reason); True if it may start now."""
    pauses = pauses_applying(active_pauses(now), execution.host_id, execution.runbook.category)
    if pauses:
        execution.move_to(ExecutionState.HELD, now)
        execution.save(update_fields=["state", "state_changed_at"])
        events.append(
            audit_event(execution, "system", "execution.held", f"held: {pauses[0].describe()}")
        )
        return False
    check = dispatch_check(execution, now)
    if check.refusals:
        cancel_locked(
            execution, now, events, "system", " ".join(check.refusals), refusals=check.refusals
        )
        return False
    if check.waits:
        _hold_until_checks_pass(execution, now, events, check.waits)
        return False
    return True


def _hold_until_checks_pass(
    execution: Execution, now: datetime, events: list[PendingEvent], waits: Sequence[str]
) -> None:
    """Hold an execution a passing check would let start, until its deadline: the earlier of
    WARDEN_HOLD_DEADLINE_SECONDS from its first hold and its approval's expiry. The sweeper
    releases it once the checks pass (release_held_executions), or cancels it at the deadline."""
    first_hold = execution.hold_until is None
    if first_hold:
        deadline = now + timedelta(seconds=settings.WARDEN_HOLD_DEADLINE_SECONDS)
        request = execution.approval_request
        if request is not None and request.expires_at < deadline:
            deadline = request.expires_at
        execution.hold_until = deadline
    execution.hold_reason = " ".join(waits)[:500]
    if execution.state != ExecutionState.HELD:
        execution.move_to(ExecutionState.HELD, now)
    execution.save(update_fields=["state", "state_changed_at", "hold_reason", "hold_until"])
    if first_hold:  # told once, not at every re-check
        until = timezone.localtime(execution.hold_until).strftime("%Y-%m-%d %H:%M %Z")
        events.append(
            audit_event(
                execution,
                "system",
                "execution.waiting",
                f"held until its checks pass, at the latest {until}: {' '.join(waits)}",
                waits=list(waits),
                hold_until=execution.hold_until.isoformat(),
            )
        )


def release_held_executions(now: datetime) -> int:
    """Put held executions back in the queue once nothing holds them: their pause has ended,
    and the checks they wait for would pass now. Returns how many."""
    with transaction.atomic():
        held = list(
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host", "approval_request", "decision")
            .filter(state=ExecutionState.HELD)
            .order_by("created_at")  # the longest waiting first, when room frees for one
        )
        pauses = list(active_pauses(now))
        events: list[PendingEvent] = []
        released = 0
        for execution in held:
            if pauses_applying(pauses, execution.host_id, execution.runbook.category):
                continue
            waiting = execution.hold_until is not None
            if waiting and dispatch_check(execution, now).waits:
                continue
            execution.move_to(ExecutionState.QUEUED, now)
            execution.save(update_fields=["state", "state_changed_at"])
            why = "its checks pass now" if waiting else "pause ended"
            events.append(audit_event(execution, "system", "execution.released", f"{why}; queued"))
            enqueue_after_commit(execution.pk)
            released += 1
        append_events(events)
        return released
