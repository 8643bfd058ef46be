"""A ticket's status change and its audit event, written one way.

Every move goes through the ticket's transition table (Ticket.move_to) and returns
the event that records it, for the caller to append in the same transaction.
"""

from datetime import datetime
from typing import Any

from governance.audit.log import PendingEvent, event
from remediation.choices import TicketStatus
from remediation.models import Ticket


def move_ticket(
    ticket: Ticket,
    status: str,
    *,
    actor: str,
    summary: str,
    now: datetime | None = None,
    data: dict[str, Any] | None = None,
    also_saved: tuple[str, ...] = (),
) -> PendingEvent:
    """Move `ticket` to `status`, save it (and `also_saved` fields), return the event.

    The event's action is "ticket.<status>"; illegal moves raise before anything is saved.
    """
    ticket.move_to(status, now)
    ticket.save(update_fields=["status", "resolved_at", *also_saved])
    return event(actor, f"ticket.{status}", ticket, summary, ticket_id=ticket.ticket_id, data=data)


def escalate_ticket(ticket: Ticket, why: str, *, actor: str = "system") -> list[PendingEvent]:
    """Hand `ticket` to people, saying why: its event, or none when it is closed or
    escalated already."""
    if ticket.status == TicketStatus.ESCALATED or not ticket.is_open:
        return []
    summary = f"{ticket.ticket_id} escalated: {why}"
    return [move_ticket(ticket, TicketStatus.ESCALATED, actor=actor, summary=summary)]
