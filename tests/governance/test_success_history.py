"""The success-history part of reliability counts only tickets that have an outcome.

Resolved tickets are the successes and tickets closed unresolved the failures;
tickets still open have no outcome yet and must not drag the rate down.
"""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from feedback.models import Pattern
from governance.decisions.deciding import decide_ticket
from governance.decisions.stats import statistics
from remediation.actions import add_host
from remediation.choices import TicketStatus
from remediation.models import Host, Ticket

DAY = timedelta(days=1)


class Tickets:
    """Disk tickets on a fleet of their own: one host each, so open ones never collide."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.made = 0

    def make(
        self,
        status: str,
        *,
        opened: timedelta = DAY,
        closed: timedelta | None = None,
        category: str = "disk",
    ) -> Ticket:
        """A ticket opened `opened` ago and, when given, closed `closed` ago."""
        self.made += 1
        host: Host = add_host(f"hist-{self.made:02d}", now=timezone.now())[0]
        resolved_at = self.now - closed if closed is not None else None
        if resolved_at is None and status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            resolved_at = self.now - opened + timedelta(minutes=5)
        return Ticket.objects.create(
            ticket_id=f"INC-9{self.made:05d}",
            title=f"{category} problem",
            host=host,
            category=category,
            status=status,
            opened_at=self.now - opened,
            resolved_at=resolved_at,
        )


@pytest.fixture
def tickets(db) -> Tickets:
    return Tickets(timezone.now())


def test_open_tickets_do_not_lower_the_success_history(tickets):
    # given two resolved disk tickets and three still being worked on
    for _ in range(2):
        tickets.make(TicketStatus.RESOLVED)
    for status in (TicketStatus.OPEN, TicketStatus.AWAITING_APPROVAL, TicketStatus.ESCALATED):
        tickets.make(status)
    new = tickets.make(TicketStatus.OPEN, opened=timedelta(0))

    # when the new ticket is decided
    decision = decide_ticket(
        new, severity=1, confidence=0.95, explanation=[["disk_usage", 0.7]], now=tickets.now
    )

    # then its success history is two out of two, not two out of five
    assert decision.reliability["success_history"] == 100.0


def test_a_ticket_closed_unresolved_counts_as_a_failure(tickets):
    # given one resolved, one closed without resolution, one open
    tickets.make(TicketStatus.RESOLVED)
    tickets.make(TicketStatus.CLOSED)
    tickets.make(TicketStatus.REMEDIATING)
    new = tickets.make(TicketStatus.OPEN, opened=timedelta(0))

    # when
    stats = statistics(new, None, tickets.now)

    # then
    assert (stats.category_resolved, stats.category_total) == (1, 2)


def test_with_only_open_tickets_the_history_is_unknown_not_zero(tickets):
    # given three disk tickets, none finished
    for _ in range(3):
        tickets.make(TicketStatus.ESCALATED)
    new = tickets.make(TicketStatus.OPEN, opened=timedelta(0))

    # when
    decision = decide_ticket(new, severity=1, confidence=0.95, explanation=[], now=tickets.now)

    # then the score takes its no-history prior (50), as on a fresh install
    assert decision.reliability["success_history"] == 50.0


def test_history_is_read_as_it_stood_when_the_decision_was_made(tickets):
    # given a ticket resolved in the past, one resolved only after the moment we
    # decide at, one opened after it, and one of another category
    tickets.make(TicketStatus.RESOLVED, opened=3 * DAY, closed=2 * DAY)
    tickets.make(TicketStatus.CLOSED, opened=3 * DAY, closed=timedelta(hours=1))
    tickets.make(TicketStatus.RESOLVED, opened=timedelta(hours=2), closed=timedelta(hours=1))
    tickets.make(TicketStatus.CLOSED, opened=3 * DAY, closed=2 * DAY, category="cpu")
    replayed = tickets.make(TicketStatus.RESOLVED, opened=DAY, closed=timedelta(hours=12))
    # all of the same learned pattern, so the resolved ones count as similar tickets
    same = Pattern.objects.create(signature="disk-history", category="disk")
    Ticket.objects.update(pattern=same)
    replayed.refresh_from_db()

    # when a simulation replays the ticket at the moment it opened
    stats = statistics(replayed, None, replayed.opened_at)

    # then only the first ticket was history then; the ticket's own outcome is not
    assert (stats.category_resolved, stats.category_total) == (1, 1)
    assert stats.similar_resolved_tickets == 1


def test_tickets_older_than_six_months_are_not_history(tickets):
    # given a failure long ago and a recent success
    tickets.make(TicketStatus.CLOSED, opened=200 * DAY, closed=199 * DAY)
    tickets.make(TicketStatus.RESOLVED)
    new = tickets.make(TicketStatus.OPEN, opened=timedelta(0))

    # when
    stats = statistics(new, None, tickets.now)

    # then
    assert (stats.category_resolved, stats.category_total) == (1, 1)
