"""A person closes a ticket: resolved by hand, or closed unresolved.

Closing is refused while an execution is still active (roll it back or let it
finish first); a pending approval request expires with the ticket. The outcome
counts on the ticket's learned pattern, so people's verdicts shape what Warden
may later do by itself.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from feedback import patterns
from governance.audit import append_events, event, user_actor
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.choices import EXECUTION_ACTIVE_STATES, TicketStatus
from remediation.executions import ExecutionError
from remediation.models import Ticket


def close_ticket(ticket: Ticket, *, user: Any, resolved: bool, note: str, now: datetime) -> Ticket:
    """Close `ticket` as resolved (fixed by hand) or not; raises ExecutionError when it cannot."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if not ticket.is_open:
            raise ExecutionError("closed", f"{ticket.ticket_id} is already {ticket.status}")
        active = ticket.executions.filter(state__in=list(EXECUTION_ACTIVE_STATES)).first()
        if active is not None:
            raise ExecutionError(
                "active_execution",
                f"{ticket.ticket_id} has execution {active.pk} still {active.state}: "
                "roll it back or let it finish first",
            )
        ticket.move_to(TicketStatus.RESOLVED if resolved else TicketStatus.CLOSED, now)
        ticket.resolution = note or ("Resolved by hand." if resolved else "Closed unresolved.")
        ticket.save(update_fields=["status", "resolved_at", "resolution"])
        expired = ApprovalRequest.objects.filter(
            ticket=ticket, status=ApprovalStatus.PENDING
        ).update(status=ApprovalStatus.EXPIRED)
        patterns.record_outcome(ticket, resolved=resolved)
        how = "resolved by hand" if resolved else "closed unresolved"
        append_events(
            [
                event(
                    user_actor(user),
                    f"ticket.{ticket.status}",
                    ticket,
                    f"{ticket.ticket_id} {how}: {ticket.resolution}",
                    ticket_id=ticket.ticket_id,
                    data={"expired_approval_requests": expired},
                )
            ]
        )
    return ticket
