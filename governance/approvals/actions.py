"""People's answers to an approval request: approve_request and reject_request, each
`(request, *, actor, reason, now)`; the reason is the approver's comment (optional to
approve, required to reject).

An approver never approves their own request; critical actions need two different
approvers; one rejection is a veto. The execution is queued only when the last required
approval arrives, in the same transaction. The flow's own steps (request, void, expire)
are in requests.py.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.approvals.requests import (
    ApprovalError,
    approvals_counted,
    check_can_decide,
    stale_because,
    void_request,
)
from governance.audit.changes import require_reason
from governance.audit.log import append_events, event, user_actor
from governance.audit.tickets import escalate_ticket
from governance.models import Approval, ApprovalRequest, ApprovalStatus, Verdict
from remediation.choices import TicketStatus
from remediation.executions.queueing import queue_execution
from remediation.models import Ticket


def _locked(request: ApprovalRequest) -> ApprovalRequest:
    """Lock the ticket, then the request: the metrics pipeline takes tickets first too."""
    ticket = (
        Ticket.objects.select_for_update(of=("self",))
        .select_related("host")
        .get(pk=request.ticket_id)
    )
    request = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("runbook", "decision__policy")
        .get(pk=request.pk)
    )
    request.ticket = ticket
    return request


def approve_request(
    request: ApprovalRequest, *, actor: Any, reason: str, now: datetime
) -> ApprovalRequest:
    """Record `actor`'s approval, with their comment `reason` (may be ""); the last one
    needed queues the execution. A request no longer showing what people were shown is
    voided instead, and the approval refused."""
    with transaction.atomic():
        request = _locked(request)
        check_can_decide(request, actor, now)
        stale = stale_because(request)
        if stale is not None:
            request = _void_and_escalate(request, stale, now)
    if stale is not None:
        raise ApprovalError("voided", f"this request was voided: {stale}")
    with transaction.atomic():
        request = _locked(request)
        check_can_decide(request, actor, now)
        Approval.objects.create(
            request=request, approver=actor, verdict=Verdict.APPROVE, comment=reason, created_at=now
        )
        count = approvals_counted(request)
        ticket = request.ticket
        events = [
            event(
                user_actor(actor),
                "approval.approved",
                request,
                f"{actor.get_username()} approved {request.runbook.name} for {ticket.ticket_id} "
                f"({count}/{request.required_approvals})",
                ticket_id=ticket.ticket_id,
                data={"comment": reason, "count": count},
            )
        ]
        if count >= request.required_approvals:
            request.status = ApprovalStatus.APPROVED
            request.decided_at = now
            request.save(update_fields=["status", "decided_at"])
            queue_execution(
                ticket=ticket,
                runbook=request.runbook,
                idempotency_key=f"approval:{request.pk}",
                now=now,
                events=events,
                decision=request.decision,
                approval_request=request,
                requested_by=actor,
            )
        append_events(events)
        return request


def _void_and_escalate(request: ApprovalRequest, reason: str, now: datetime) -> ApprovalRequest:
    events = [void_request(request, actor="system", reason=reason, now=now)]
    ticket = request.ticket
    if ticket.status == TicketStatus.AWAITING_APPROVAL:
        events += escalate_ticket(ticket, f"its approval was voided ({reason})")
    append_events(events)
    return request


def reject_request(
    request: ApprovalRequest, *, actor: Any, reason: str, now: datetime
) -> ApprovalRequest:
    """One rejection is a veto: nothing runs and the ticket goes to people. `reason` says
    why and is required (kept whole as the rejection's comment)."""
    require_reason(reason, ApprovalError("note_required", "a rejection needs a note saying why"))
    with transaction.atomic():
        request = _locked(request)
        check_can_decide(request, actor, now)
        Approval.objects.create(
            request=request, approver=actor, verdict=Verdict.REJECT, comment=reason, created_at=now
        )
        request.status = ApprovalStatus.REJECTED
        request.decided_at = now
        request.save(update_fields=["status", "decided_at"])
        ticket = request.ticket
        append_events(
            [
                *escalate_ticket(ticket, f"{actor.get_username()} rejected {request.runbook.name}"),
                event(
                    user_actor(actor),
                    "approval.rejected",
                    request,
                    f"{actor.get_username()} rejected {request.runbook.name} "
                    f"for {ticket.ticket_id}",
                    ticket_id=ticket.ticket_id,
                    data={"comment": reason},
                ),
            ]
        )
        return request
