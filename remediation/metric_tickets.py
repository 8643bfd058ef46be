"""The tickets an agent's metrics open: one per host and problem, counted or decided.

A problem a batch shows is counted on the host's open ticket for it when that ticket
needs nothing more (one statement, before the samples are stored), or opens a ticket,
or makes an open one more severe: those are decided by governance and the decision is
carried out (remediation.decision_outcomes). Warden numbers these tickets INC-000123.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import OuterRef, Subquery

from feedback import patterns
from governance.audit.log import PendingEvent, event
from governance.decisions.deciding import decide_on_sample
from governance.models import Decision
from governance.rules.facts import NO_ACTION
from remediation.choices import TICKET_OPEN_STATUSES, Category, TicketStatus
from remediation.decision_outcomes import act_on_decision
from remediation.models import Counter, Host, Ticket
from remediation.sample_batches import StoredSample
from scoring.choices import Severity
from scoring.features import Reading
from scoring.inference import Classification

# Ticket numbers on PostgreSQL (remediation/migrations/0005_serving_path.py).
TICKET_SEQUENCE = "remediation_ticket_number"
# What a ticket's title quotes for each category.
TITLE_METRIC = {
    Category.DISK: ("disk_usage", "Disk usage {:.0f}%"),
    Category.MEMORY: ("memory_usage", "Memory usage {:.0f}%"),
    Category.CPU: ("cpu_usage", "CPU usage {:.0f}%"),
    Category.DNS: ("dns_latency_ms", "DNS latency {:.0f} ms"),
    Category.FIREWALL: ("firewall_change_requested", "Firewall change requested"),
}


@dataclass(frozen=True)
class CountedTicket:
    pk: int
    ticket_id: str
    outcome: str  # the latest decision's, which still applies


# Counting a repeat on the host's open ticket, in one statement (raw SQL: the ORM's
# update() cannot return the row). A ticket still OPEN that the repeat makes more
# severe is left alone: it must be decided again (handle_problem).
_COUNT_REPEAT = """
UPDATE {ticket} SET
    occurrence_count = occurrence_count + %s,
    severity = CASE WHEN severity < %s THEN %s ELSE severity END,
    confidence = %s,
    last_seen_at = %s
WHERE host_id = %s AND category = %s AND status IN ({open_statuses})
    AND NOT (status = %s AND severity < %s)
RETURNING id, ticket_id, (
    SELECT outcome FROM {decision} WHERE {decision}.ticket_id = {ticket}.id
    ORDER BY created_at DESC LIMIT 1
)
"""


def count_repeat(
    host: Host, category: str, group: Sequence[tuple[Reading, Classification]], now: datetime
) -> CountedTicket | None:
    """Count these samples on the host's open ticket for `category`, if one needs nothing more.

    Returns None when there is no open ticket, or one that must be decided again.
    Counting is the system's bookkeeping, not a person's edit: no history row.
    """
    worst = max(verdict.severity for _, verdict in group)
    _, latest = max(group, key=lambda pair: pair[0].taken_at)
    statuses = sorted(TICKET_OPEN_STATUSES)
    with connection.cursor() as cursor:
        cursor.execute(
            _COUNT_REPEAT.format(
                ticket=Ticket._meta.db_table,
                decision=Decision._meta.db_table,
                open_statuses=", ".join(["%s"] * len(statuses)),
            ),
            [
                len(group),
                worst,
                worst,
                latest.confidence,
                connection.ops.adapt_datetimefield_value(now),
                host.pk,
                category,
                *statuses,
                TicketStatus.OPEN.value,
                worst,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    pk, ticket_id, outcome = row
    return CountedTicket(pk, ticket_id, outcome or NO_ACTION)


def lock_open_tickets(host: Host, categories: Sequence[str]) -> dict[str, Ticket]:
    """The host's open tickets in `categories`, locked, each with its latest decision's outcome."""
    latest_outcome = (
        Decision.objects.filter(ticket=OuterRef("pk")).order_by("-created_at").values("outcome")[:1]
    )
    tickets = (
        Ticket.objects.select_for_update(of=("self",))
        .filter(host=host, category__in=categories, status__in=list(TICKET_OPEN_STATUSES))
        .annotate(latest_outcome=Subquery(latest_outcome))
    )
    return {ticket.category: ticket for ticket in tickets}


def handle_problem(
    host: Host,
    category: str,
    samples: Sequence[StoredSample],
    ticket: Ticket | None,
    model_version_id: int,
    now: datetime,
    events: list[PendingEvent],
    occurrences: list[patterns.Occurrence],
) -> tuple[Ticket, str]:
    """Open the host's ticket for `category` or count the repeat on it, deciding when needed.

    `ticket` is the open one, locked, if any. Returns the ticket and the outcome of
    the decision that applies to it now.
    """
    worst = max(samples, key=lambda s: (s.severity, s.taken_at))
    latest = max(samples, key=lambda s: s.taken_at)
    if ticket is None:
        ticket = open_ticket(host, category, worst, len(samples), now, events)
        needs_decision = True
    else:
        needs_decision = ticket.status == TicketStatus.OPEN and worst.severity > ticket.severity
        count_repeats(ticket, len(samples), worst.severity, latest.confidence, now)
    if not needs_decision:
        return ticket, ticket.latest_outcome or NO_ACTION

    decision = decide_on_sample(
        ticket,
        worst,
        model_version_id=model_version_id,
        now=now,
        probabilities=worst.verdict.probabilities,
        occurrences=occurrences,
    )
    act_on_decision(ticket, decision, now, events)
    return ticket, decision.outcome


def count_repeats(
    ticket: Ticket, count: int, severity: int, confidence: float, now: datetime
) -> None:
    """Count `count` more samples on a locked open ticket.

    A plain UPDATE: counting is the system's bookkeeping, not a change people make,
    so it writes no history row.
    """
    ticket.occurrence_count += count
    ticket.severity = max(ticket.severity, severity)
    ticket.confidence = confidence
    ticket.last_seen_at = now
    Ticket.objects.filter(pk=ticket.pk).update(
        occurrence_count=ticket.occurrence_count,
        severity=ticket.severity,
        confidence=confidence,
        last_seen_at=now,
    )


def open_ticket(
    host: Host,
    category: str,
    sample: StoredSample,
    count: int,
    now: datetime,
    events: list[PendingEvent],
) -> Ticket:
    """A new ticket for `count` samples showing the problem, `sample` the worst of them."""
    ticket = Ticket.objects.create(
        ticket_id=next_ticket_id(),
        title=ticket_title(host, category, sample),
        host=host,
        category=category,
        severity=sample.severity,
        confidence=sample.confidence,
        occurrence_count=count,
        opened_at=now,
        last_seen_at=now,
    )
    events.append(
        event(
            f"agent:{host.name}",
            "ticket.opened",
            ticket,
            f"{ticket.ticket_id} opened: {ticket.title}",
            ticket_id=ticket.ticket_id,
            data={
                "severity": Severity(sample.severity).label,
                "confidence": sample.confidence,
                "explanation": sample.explanation,
            },
        )
    )
    return ticket


def next_ticket_id() -> str:
    """INC-000123. PostgreSQL draws from a sequence, which no transaction waits for (a
    rolled-back ticket leaves a gap); SQLite has one writer at a time, so a counter row."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(%s)", [TICKET_SEQUENCE])
            (number,) = cursor.fetchone()
    else:
        counter = Counter.objects.select_for_update().get(name="ticket")
        counter.value = number = counter.value + 1
        counter.save(update_fields=["value"])
    return f"INC-{number:06d}"


def ticket_title(host: Host, category: str, sample: StoredSample) -> str:
    metric, template = TITLE_METRIC.get(category, ("", f"{category} problem"))
    value = getattr(sample.reading, metric, None) if metric else None
    return f"{template.format(value) if value is not None else template} on {host.name}"
