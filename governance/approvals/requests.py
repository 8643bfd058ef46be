"""Approval requests as the flow handles them: requested for a decided action, checked before
people decide, voided when their facts change, expired when nobody answers.

People's answers (approve, reject) are in actions.py.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from governance.audit import permissions
from governance.audit.changes import REASON_FIELD
from governance.audit.errors import Conflict, Forbidden, Invalid
from governance.audit.log import PendingEvent, append_events, event
from governance.audit.tickets import escalate_ticket
from governance.decisions.facts import DecidedCommand, decided_command, runbook_version
from governance.decisions.stats import readings_show_problem
from governance.models import ApprovalRequest, ApprovalStatus, Decision, Verdict
from governance.rules.command_floor import runbook_refusals
from remediation.choices import TicketStatus
from remediation.models import Runbook, Ticket


class ApprovalError(Conflict):
    """An approval action that is not allowed; `code` is machine-readable."""

    status_by_code = {
        "note_required": Invalid.status,
        "forbidden": Forbidden.status,
        "own_request": Forbidden.status,
        "own_change": Forbidden.status,
        "service_account": Forbidden.status,
        "not_listed": Forbidden.status,
    }

    def __init__(self, code: str, message: str) -> None:
        # A rejection without a note is a fault in the reason the person gave.
        fields = {REASON_FIELD: [message]} if code == "note_required" else None
        super().__init__(code, message, fields)


def request_approval(
    *,
    ticket: Ticket,
    decision: Decision | None,
    runbook: Runbook,
    required_approvals: int,
    now: datetime,
    events: list[PendingEvent],
    requested_by: Any = None,
) -> ApprovalRequest:
    """Ask people to approve `runbook` for `ticket`. Expects the caller's transaction.

    The request binds to the exact argv people are shown (its digest): the decision's."""
    command = (
        DecidedCommand(decision.argv, decision.rollback_argv)
        if decision is not None and decision.runbook_id == runbook.pk
        else decided_command(runbook, ticket)
    )
    request = ApprovalRequest.objects.create(
        ticket=ticket,
        decision=decision,
        runbook=runbook,
        runbook_version=decision.runbook_version if decision else runbook_version(runbook),
        argv_digest=command.digest,
        required_approvals=max(required_approvals, 1),
        requested_by=requested_by,
        created_at=now,
        expires_at=now + timedelta(hours=settings.WARDEN_APPROVAL_TTL_HOURS),
    )
    ticket.move_to(TicketStatus.AWAITING_APPROVAL)
    ticket.save(update_fields=["status", "resolved_at"])
    events.append(
        event(
            "system",
            "approval.requested",
            request,
            f"{runbook.name} on {ticket.host.name} needs {request.required_approvals} "
            f"approval(s) ({ticket.ticket_id})",
            ticket_id=ticket.ticket_id,
            data={
                "runbook": runbook.name,
                "runbook_version": request.runbook_version,
                "action": decision.action if decision else runbook.action,
                "argv": command.argv,
                "argv_digest": command.digest,
                "sample": decision.sample_id if decision else None,
                "required_approvals": request.required_approvals,
                "requested_by": requested_by.get_username() if requested_by else None,
            },
        )
    )
    return request


def check_can_decide(request: ApprovalRequest, actor: Any, now: datetime) -> None:
    """Raise ApprovalError unless `actor` may give a verdict on `request` now."""
    if not (actor.is_active and actor.has_perm(permissions.APPROVE)):
        raise ApprovalError("forbidden", f"{actor.get_username()} is not an approver")
    if request.status != ApprovalStatus.PENDING:
        raise ApprovalError("not_pending", f"this request is already {request.status}")
    if request.expires_at <= now:
        raise ApprovalError("expired", "this request has expired")
    refusal = separation_of_duties(request, actor)
    if refusal is not None:
        raise refusal
    approvers = (
        request.decision.policy.approvers if request.decision and request.decision.policy else []
    )
    if approvers and actor.get_username() not in approvers and actor.email not in approvers:
        raise ApprovalError(
            "not_listed", f"the {request.ticket.category} policy names other approvers"
        )
    earlier = _earlier_verdict_of(request, actor)
    if earlier is not None:
        raise ApprovalError(
            "already_decided",
            f"{actor.get_username()} already gave a verdict"
            + (f" (as {earlier})" if earlier != actor.get_username() else ""),
        )
    decided = request.decision.commands if request.decision else request.runbook.commands
    refusals = runbook_refusals(request.runbook.name, decided)
    if refusals:
        raise ApprovalError("forbidden_command", refusals[0])


def separation_of_duties(request: ApprovalRequest, actor: Any) -> ApprovalError | None:
    """Why `actor` may never decide `request` whatever their roles, or None: a service's
    user, the person who opened its ticket or asked for it (by session or by any token:
    each is the same user), or who saved the runbook version it would run."""
    if permissions.is_service_account(actor):
        return ApprovalError(
            "service_account",
            f"{actor.get_username()} is a service's user: services never approve",
        )
    if actor.pk in (request.requested_by_id, request.ticket.opened_by_id):
        return ApprovalError(
            "own_request", f"nobody approves their own request ({request.ticket.ticket_id})"
        )
    author = (
        Runbook.history.filter(history_id=request.runbook_version)
        .values_list("history_user_id", flat=True)
        .first()
    )
    if author is not None and author == actor.pk:
        return ApprovalError(
            "own_change",
            f"{actor.get_username()} saved this version of {request.runbook.name}: "
            "another person approves running it",
        )
    return None


def approvals_counted(request: ApprovalRequest) -> int:
    """How many people approved `request`: each person once, no service's user."""
    return (
        request.approvals.filter(verdict=Verdict.APPROVE)
        .exclude(approver__groups__name__in=permissions.SERVICE_ROLES)
        .values("approver")
        .distinct()
        .count()
    )


def _earlier_verdict_of(request: ApprovalRequest, actor: Any) -> str | None:
    """The username under which the person `actor` is already counted on `request`: the
    same user (by session or any of their tokens), or another account with their email.
    One person counts once."""
    email = (actor.email or "").strip()
    same_person = Q(approver=actor)
    if email:
        same_person |= Q(approver__email__iexact=email)
    return (
        request.approvals.filter(same_person).values_list("approver__username", flat=True).first()
    )


def void_request(
    request: ApprovalRequest, *, actor: str, reason: str, now: datetime
) -> PendingEvent:
    """Void a pending request whose runbook or readings changed (the caller holds its lock
    and audits the returned event): nobody may approve what they were not shown."""
    request.status = ApprovalStatus.VOIDED
    request.decided_at = now
    request.void_reason = reason[:500]
    request.save(update_fields=["status", "decided_at", "void_reason"])
    return event(
        actor,
        "approval.voided",
        request,
        f"approval for {request.runbook.name} on {request.ticket.ticket_id} voided: {reason}",
        ticket_id=request.ticket.ticket_id,
        data={"reason": reason, "runbook_version": request.runbook_version},
    )


def stale_because(request: ApprovalRequest) -> str | None:
    """Why what people would approve is no longer what they were shown, or None."""
    current = runbook_version(request.runbook)
    if request.runbook_version != current:
        return (
            f"runbook {request.runbook.name} changed since it was requested "
            f"(version {request.runbook_version} shown, {current} now)"
        )
    command = decided_command(request.runbook, request.ticket)
    if request.argv_digest and command.digest != request.argv_digest:
        return "the exact command it would run changed since it was requested"
    if command.unrunnable:
        return command.unrunnable[0]
    decision = request.decision
    if not readings_show_problem(
        request.ticket.host_id, request.runbook.category, decision.sample_id if decision else None
    ):
        return f"{request.ticket.host.name}'s newest readings no longer show the problem"
    return None


def expire_approval_requests(now: datetime) -> int:
    """Expire pending requests past their deadline; their tickets go to people."""
    with transaction.atomic():
        expired = list(
            ApprovalRequest.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook")
            .filter(status=ApprovalStatus.PENDING, expires_at__lte=now)
        )
        events = []
        for request in expired:
            request.status = ApprovalStatus.EXPIRED
            request.decided_at = now
            request.save(update_fields=["status", "decided_at"])
            ticket = request.ticket
            if ticket.status == TicketStatus.AWAITING_APPROVAL:
                events += escalate_ticket(ticket, "its approval expired unanswered")
            events.append(
                event(
                    "system",
                    "approval.expired",
                    request,
                    f"approval for {request.runbook.name} on {ticket.ticket_id} expired unanswered",
                    ticket_id=ticket.ticket_id,
                )
            )
        append_events(events)
        return len(expired)
