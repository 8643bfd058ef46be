"""The demo's track record: three past problems of each self-healing kind, resolved by people.

The default policies act by themselves only on a known good pattern: three similar
tickets resolved, people's feedback positive (the seed's step 6), which puts reliability
above the seed's medium band (60). A demo that starts empty would send every problem to
people for its first minutes; `run_demo` records this history once instead, so the
fleet's first full disk, leaking service or runaway process heals by itself, and the
pattern pages show what earned it. Every row is written through the same use cases as
real ones: tickets opened and resolved (audited), counted on their pattern, rated by
the supervisor account (audited feedback).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from feedback import patterns
from feedback.actions import give_feedback
from feedback.models import Feedback, Pattern
from governance.audit.log import PendingEvent, append_events, event
from remediation.choices import TicketStatus
from remediation.metric_tickets import TITLE_METRIC, next_ticket_id
from remediation.models import Host, Ticket

# What each kind's past tickets read: the metric at its worst, and what a person did.
PAST_PROBLEMS = {
    "disk": (97.0, "Old temporary files moved to quarantine and logs rotated."),
    "memory": (96.0, "The leaking service was restarted; memory back to normal."),
    "cpu": (99.0, "The runaway process was capped; CPU back to normal."),
}
PAST_TICKETS = 3  # the seed's step 6: three similar resolved tickets
PAST_CONFIDENCE = 0.9
PAST_RELIABILITY = 50.0  # what a fresh install scores at 0.9 confidence


def record_track_record(hosts: list[Host], supervisor: Any, now: datetime) -> int:
    """Three resolved, well-rated past tickets per self-healing kind, on `hosts` in turn,
    for each kind that has no known good pattern yet; returns how many tickets."""
    made = 0
    for category, (worst, resolution) in PAST_PROBLEMS.items():
        if any(patterns.is_known_good(p) for p in Pattern.objects.filter(category=category)):
            continue
        for index in range(PAST_TICKETS):
            host = hosts[(made + index) % len(hosts)]
            opened = now - timedelta(days=PAST_TICKETS - index, hours=1)
            ticket = _past_ticket(host, category, worst, resolution, opened)
            give_feedback(
                Feedback(ticket=ticket, feedback_type="positive", rating=5, was_helpful=True),
                actor=supervisor,
                reason="",
                now=opened + timedelta(hours=1),
            )
        made += PAST_TICKETS
    return made


def _past_ticket(
    host: Host, category: str, worst: float, resolution: str, opened: datetime
) -> Ticket:
    metric, template = TITLE_METRIC[category]
    resolved = opened + timedelta(minutes=30)
    with transaction.atomic():
        ticket = Ticket.objects.create(
            ticket_id=next_ticket_id(),
            title=f"{template.format(worst)} on {host.name}",
            host=host,
            category=category,
            status=TicketStatus.RESOLVED,
            confidence=PAST_CONFIDENCE,
            opened_at=opened,
            last_seen_at=opened,
            resolved_at=resolved,
            resolution=resolution,
        )
        explanation = [(metric, 0.6)]
        found = patterns.match(category, explanation, ticket.title)
        patterns.record_occurrence(
            ticket, found, confidence=PAST_CONFIDENCE, reliability=PAST_RELIABILITY, now=opened
        )
        patterns.record_outcome(ticket, resolved=True)
        events: list[PendingEvent] = [
            event(
                "system",
                action,
                ticket,
                f"{ticket.ticket_id} {what} (the demo's track record)",
                ticket_id=ticket.ticket_id,
            )
            for action, what in (
                ("ticket.opened", f"opened: {ticket.title}"),
                ("ticket.resolved", f"resolved: {resolution}"),
            )
        ]
        append_events(events)
    return ticket
