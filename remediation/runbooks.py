"""Editing a runbook: a new version, and nothing decided on the old one runs.

Approvals and executions bind to the runbook version they were decided on. An
edit voids the pending approvals and cancels the executions not yet started,
then decides their tickets again under the new text, all in the edit's
transaction and on the record with its cause. A runbook is never deleted: it is
retired by disabling it, which is an edit like any other.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.approvals.actions import void_request
from governance.audit.changes import Change, save_governed
from governance.audit.log import PendingEvent, append_events, event
from governance.audit.tickets import escalate_ticket
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.choices import ExecutionState
from remediation.executions import cancel_for_change
from remediation.models import AutomationTarget, Execution, Runbook, Ticket
from remediation.pipeline import redecide_ticket

# Not yet on a host: these are cancelled by an edit. One already running finishes
# (the agent has it) and is verified as usual.
NOT_STARTED = (ExecutionState.QUEUED, ExecutionState.HELD, ExecutionState.DISPATCHED)


def save_runbook(runbook: Runbook, *, user: Any, reason: str | None, now: datetime) -> Change:
    """Validate and save `runbook` as a new version, audited; an edit voids and re-decides."""
    return _save_voiding(runbook, f"runbook {runbook.name}", user=user, reason=reason, now=now)


def save_automation_target(
    target: AutomationTarget, *, user: Any, reason: str | None, now: datetime
) -> Change:
    """Validate and save an automation target, audited. Where a runbook runs is part of what
    was approved: an edit voids and re-decides the work decided on each runbook it runs."""
    return _save_voiding(
        target, f"automation target {target.name}", user=user, reason=reason, now=now
    )


def _save_voiding(
    obj: Runbook | AutomationTarget, what: str, *, user: Any, reason: str | None, now: datetime
) -> Change:
    with transaction.atomic():
        change = save_governed(obj, user=user, reason=reason)
        if change.is_edit:
            cause = f"{what} changed ({', '.join(change.changed)}; version {change.version})"
            runbooks = [obj] if isinstance(obj, Runbook) else obj.runbooks.order_by("pk")
            for runbook in runbooks:
                append_events(void_decided_work(runbook, cause=cause, now=now))
    return change


def void_decided_work(runbook: Runbook, *, cause: str, now: datetime) -> list[PendingEvent]:
    """Void what was decided on an older version of `runbook` and decide those tickets again.

    Expects the caller's transaction; returns the audit events.
    """
    events: list[PendingEvent] = []
    ticket_ids: set[int] = set()
    requests = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("ticket__host", "runbook")
        .filter(runbook=runbook, status=ApprovalStatus.PENDING)
    )
    for request in requests:
        events.append(void_request(request, actor="system", reason=cause, now=now))
        ticket_ids.add(request.ticket_id)
    executions = (
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook", "host")
        .filter(runbook=runbook, state__in=NOT_STARTED)
    )
    for execution in executions:
        cancel_for_change(execution, now, events, cause)
        ticket_ids.add(execution.ticket_id)
    tickets = Ticket.objects.select_for_update().select_related("host").filter(pk__in=ticket_ids)
    for ticket in tickets.order_by("pk"):
        if not ticket.is_open:
            continue
        events += escalate_ticket(ticket, f"decided again: {cause}")
        if redecide_ticket(ticket, cause=cause, now=now, events=events) is None:
            why = f"{ticket.ticket_id} escalated: {cause}; no readings to decide again on"
            events.append(
                event("system", "ticket.escalated", ticket, why, ticket_id=ticket.ticket_id)
            )
    return events
