"""A ticket's status change and its audit event, written one way.

Every move goes through the ticket's transition table (Ticket.move_to) and returns
the event that records it, for the caller to append in the same transaction.
"""

from datetime import datetime
from typing import Any

from governance.audit.log import PendingEvent, event
from remediation.choices import TICKET_PEOPLE_STATUSES, TicketStatus
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
    if ticket.status in TICKET_PEOPLE_STATUSES or not ticket.is_open:
        return []
    summary = f"{ticket.ticket_id} escalated: {why}"
    return [move_ticket(ticket, TicketStatus.ESCALATED, actor=actor, summary=summary)]


def fix_did_not_hold(ticket: Ticket, why: str, *, actor: str = "system") -> list[PendingEvent]:
    """A fix was tried on `ticket` and failed or was rolled back: the seed's
    partially_remediated, for a person to finish. A ticket not remediating (a person
    already moved it) is escalated instead, or left as it is when people have it."""
    if ticket.status != TicketStatus.REMEDIATING:
        return escalate_ticket(ticket, why, actor=actor)
    summary = f"{ticket.ticket_id} partially remediated: {why}; a person finishes it"
    return [move_ticket(ticket, TicketStatus.PARTIALLY_REMEDIATED, actor=actor, summary=summary)]
