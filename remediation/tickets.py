"""People's verbs on a ticket: edit its facts, resolve it by hand, close it unresolved.

Closing cancels what is still pending on the ticket (its unfinished executions, its
pending approval request), each audited with the closing note. The outcome counts
on the ticket's learned pattern, so people's verdicts shape what Warden may later do
by itself.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from feedback import patterns
from governance.approvals.actions import void_request
from governance.audit import permissions
from governance.audit.changes import Change, require_permission, require_reason, save_governed
from governance.audit.log import PendingEvent, append_events, user_actor
from governance.audit.tickets import move_ticket
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.choices import EXECUTION_ACTIVE_STATES, TicketStatus
from remediation.executions import ExecutionError, cancel_for_change
from remediation.models import Execution, Ticket


def save_ticket(ticket: Ticket, *, user: Any, reason: str | None) -> Change:
    """Save a person's edit of a ticket's facts (title, escalation facts, opt-in), audited."""
    return save_governed(ticket, user=user, reason=reason, summary_name=ticket.ticket_id)


def close_ticket(ticket: Ticket, *, user: Any, resolved: bool, note: str, now: datetime) -> Ticket:
    """Close `ticket` as resolved (fixed by hand) or not; raises ExecutionError when it cannot."""
    require_permission(user, permissions.CLOSE_TICKET, "close tickets")
    note = require_reason(note)
    actor = user_actor(user)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().select_related("host").get(pk=ticket.pk)
        if not ticket.is_open:
            raise ExecutionError("closed", f"{ticket.ticket_id} is already {ticket.status}")
        events: list[PendingEvent] = []
        why = f"{ticket.ticket_id} closed by {user.get_username() if user else 'system'}: {note}"
        for request in (
            ApprovalRequest.objects.select_for_update(of=("self",))
            .select_related("runbook", "ticket")
            .filter(ticket=ticket, status=ApprovalStatus.PENDING)
        ):
            events.append(void_request(request, actor=actor, reason=why, now=now))
        cancelled = 0
        for execution in (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .filter(ticket=ticket, state__in=list(EXECUTION_ACTIVE_STATES))
        ):
            cancel_for_change(execution, now, events, why, actor=actor, escalate=False)
            cancelled += 1
        ticket.resolution = note
        how = "resolved by hand" if resolved else "closed unresolved"
        events.append(
            move_ticket(
                ticket,
                TicketStatus.RESOLVED if resolved else TicketStatus.CLOSED,
                actor=actor,
                summary=f"{ticket.ticket_id} {how}: {note}",
                now=now,
                data={"cancelled_executions": cancelled},
                also_saved=("resolution",),
            )
        )
        patterns.record_outcome(ticket, resolved=resolved)
        append_events(events)
    return ticket
