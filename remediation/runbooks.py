"""Editing a runbook: a new version, and nothing decided on the old one runs.

Approvals and executions bind to the runbook version they were decided on. An
edit (remediation.actions.save_runbook, or save_automation_target for where it runs)
voids the pending approvals and cancels the executions not yet started, then decides
their tickets again under the new text, all in the edit's transaction and on the record
with its cause. A runbook is never deleted: it is retired by disabling it, which is an
edit like any other.
"""

from datetime import datetime

from governance.approvals.requests import void_request
from governance.audit.log import PendingEvent, event
from governance.audit.tickets import escalate_ticket
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.choices import ExecutionState
from remediation.decision_outcomes import redecide_ticket
from remediation.executions.ending import cancel_for_change
from remediation.models import Execution, Runbook, Ticket

# Not yet on a host: these are cancelled by an edit. One already running finishes
# (the agent has it) and is verified as usual.
NOT_STARTED = (
    ExecutionState.QUEUED,
    ExecutionState.HELD,
    ExecutionState.DISPATCHED,
    ExecutionState.CLAIMED,  # the agent has it, but has not said it started
)


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
    tickets = (
        Ticket.objects.select_for_update(of=("self",))
        .select_related("host")
        .filter(pk__in=ticket_ids)
    )
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
