"""The metrics flow, top to bottom as DESIGN.md draws it.

agent samples -> feature matrix -> severity model (one batch) -> stored samples
(a resent one acknowledged, not stored again) -> fresh metrics verify running
remediations -> tickets opened or counted -> decision -> NO_ACTION recorded /
AUTO_HEAL execution queued / HITL_REQUIRED approval requested -> audit events,
all in one transaction per request, the audit chain's head locked last.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import OuterRef, Subquery

from feedback import patterns
from governance.approvals.actions import request_approval
from governance.audit.log import PendingEvent, append_events, event
from governance.audit.tickets import escalate_ticket
from governance.decisions.deciding import decide_ticket, executes_automatically
from governance.models import Decision
from governance.rules.engine import NO_ACTION
from remediation.choices import TICKET_OPEN_STATUSES, Category, ExecutionState, TicketStatus
from remediation.executions import queue_execution, verify_with_samples
from remediation.models import Counter, Execution, Host, Ticket
from scoring.choices import Severity
from scoring.features import Reading, build_features
from scoring.inference import Classification, classify
from scoring.models import MetricSample
from scoring.registry import serving_model
from scoring.samples import insert_samples

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
class SampleVerdict:
    """What the API answers for one sample."""

    taken_at: datetime
    severity: str
    confidence: float
    category: str | None
    decision: str
    ticket_id: str | None
    explanation: tuple[tuple[str, float], ...]
    # Already stored (resent, or twice in one batch): acknowledged, not stored or counted.
    duplicate: bool = False
    # Every problem it showed: (category, decision, ticket id), the strongest first.
    problems: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StoredSample:
    """A sample this request stored: its id, what the agent read and what the model said.

    What verification, tickets and decisions read, without a model instance per row.
    """

    pk: int
    reading: Reading
    verdict: Classification

    @property
    def taken_at(self) -> datetime:
        return self.reading.taken_at

    @property
    def severity(self) -> int:
        return self.verdict.severity

    @property
    def confidence(self) -> float:
        return self.verdict.confidence

    @property
    def category(self) -> str:
        return self.verdict.category or ""

    @property
    def categories(self) -> list[str]:
        return list(self.verdict.categories)

    @property
    def explanation(self) -> list[list]:
        return [[name, value] for name, value in self.verdict.explanation]


def ingest_samples(host: Host, readings: Sequence[Reading], now: datetime) -> list[SampleVerdict]:
    """Store, classify and act on one agent's batch; returns a verdict per reading, in order.

    `host` is the row as authentication read it: its newest sample gives the first
    reading's deltas. Classification runs before the transaction, so no lock waits
    for the model. A healthy batch is three statements: lock and mark the host (and
    look for executions to verify), insert the samples, commit.
    """
    model = serving_model()
    previous = host.newest_reading()
    features = build_features(readings, {host.name: previous} if previous else {})
    verdicts = classify(model.estimator, features, model.thresholds)
    first_copies = first_of_each_instant(readings)

    with transaction.atomic():
        # First: the host's row lock serialises this host's requests, so two batches
        # showing one new problem cannot both open a ticket, nor a resent batch slip in.
        locked = lock_host(host, readings, now)
        new = [i for i in first_copies.values() if readings[i].taken_at not in locked.stored]
        events: list[PendingEvent] = []
        occurrences: list[patterns.Occurrence] = []
        problems = problems_by_category({i: verdicts[i] for i in new})
        # A repeat of a problem already ticketed is counted before the samples are
        # stored, so they are stored pointing at their ticket. Not while an execution
        # verifies: its outcome may close the ticket, so that waits for verification.
        counted: dict[str, CountedTicket] = {}
        if not locked.verifying:
            for category, indexes in problems.items():
                group = [(readings[i], verdicts[i]) for i in indexes]
                repeat = count_repeat(host, category, group, now)
                if repeat is not None:
                    counted[category] = repeat
        ticket_of = {
            i: counted[c].pk
            for c, indexes in problems.items()
            if c in counted
            for i in indexes
            if primary(verdicts[i], c)
        }
        ids = insert_samples(
            host.pk,
            [readings[i] for i in new],
            [verdicts[i] for i in new],
            model.version_id,
            now,
            [ticket_of.get(i) for i in new],
        )
        samples = {
            i: StoredSample(pk, readings[i], verdicts[i]) for i, pk in zip(new, ids, strict=True)
        }
        if locked.verifying:
            verify_with_samples(host, list(samples.values()), now, events)
        # Each sample's answer per problem: (category, decision, ticket id).
        outcomes: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
        for category, repeat in counted.items():
            for i in problems[category]:
                outcomes[i].append((category, repeat.outcome, repeat.ticket_id))
        others = {c: indexes for c, indexes in problems.items() if c not in counted}
        open_tickets = lock_open_tickets(host, list(others)) if others else {}
        for category, indexes in others.items():
            group = [samples[i] for i in indexes]
            ticket, outcome = handle_problem(
                host,
                category,
                group,
                open_tickets.get(category),
                model.version_id,
                now,
                events,
                occurrences,
            )
            MetricSample.objects.filter(
                pk__in=[samples[i].pk for i in indexes if primary(verdicts[i], category)]
            ).update(ticket=ticket)
            for i in indexes:
                outcomes[i].append((category, outcome, ticket.ticket_id))
        # Last, the rows every host shares: patterns, then the audit chain's head, each
        # locked only until the commit.
        patterns.record_occurrences(occurrences)
        append_events(events)

    duplicates = (
        stored_verdicts(host, [r.taken_at for i, r in enumerate(readings) if i not in samples])
        if len(samples) < len(readings)
        else {}
    )

    results = []
    for i, (reading, verdict) in enumerate(zip(readings, verdicts, strict=True)):
        if i not in samples:
            results.append(duplicates[reading.taken_at])
            continue
        answers = sorted(outcomes.get(i, []), key=lambda a: not primary(verdict, a[0]))
        _, outcome, ticket_id = answers[0] if answers else (None, NO_ACTION, None)
        results.append(
            SampleVerdict(
                taken_at=reading.taken_at,
                severity=Severity(verdict.severity).label,
                confidence=round(verdict.confidence, 4),
                category=verdict.category,
                decision=outcome,
                ticket_id=ticket_id,
                explanation=verdict.explanation,
                problems=tuple(answers),
            )
        )
    return results


def first_of_each_instant(readings: Sequence[Reading]) -> dict[datetime, int]:
    """{taken_at: index of its first reading}: a later reading of the same instant is a copy."""
    first: dict[datetime, int] = {}
    for i, reading in enumerate(readings):
        first.setdefault(reading.taken_at, i)
    return first


@dataclass(frozen=True)
class LockedHost:
    """What the host's row lock found: the batch's instants already stored, and whether an
    execution on the host waits for fresh metrics to verify it."""

    stored: frozenset[datetime]
    verifying: bool


# The usual case in one statement: lock and mark the host if the batch is newer than
# anything stored for it, and say whether an execution there is verifying. Raw SQL
# because the ORM's update() cannot return a value, and this runs for every request.
_MARK_NEWER_BATCH = """
UPDATE {host} SET last_seen_at = %s, last_sample_at = %s, last_metrics = %s
WHERE id = %s AND (last_sample_at IS NULL OR last_sample_at < %s)
RETURNING EXISTS (SELECT 1 FROM {execution} WHERE host_id = %s AND state = %s)
"""


def lock_host(host: Host, readings: Sequence[Reading], now: datetime) -> LockedHost:
    """Lock the host's row and mark it seen (the caller's transaction holds the lock).

    Usually one statement: a batch entirely newer than the host's newest stored sample
    cannot hold a resent one. Otherwise the stored instants are read under the lock.
    """
    instants = [reading.taken_at for reading in readings]
    newest = max(readings, key=lambda reading: reading.taken_at)
    metrics = list(newest.metrics())
    ops = connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            _MARK_NEWER_BATCH.format(host=Host._meta.db_table, execution=Execution._meta.db_table),
            [
                ops.adapt_datetimefield_value(now),
                ops.adapt_datetimefield_value(newest.taken_at),
                Host._meta.get_field("last_metrics").get_db_prep_save(metrics, connection),
                host.pk,
                ops.adapt_datetimefield_value(min(instants)),
                host.pk,
                ExecutionState.VERIFYING.value,
            ],
        )
        marked = cursor.fetchone()
    if marked is not None:
        return LockedHost(frozenset(), bool(marked[0]))
    locked = Host.objects.select_for_update().only("last_sample_at").get(pk=host.pk)
    stored = frozenset(
        MetricSample.objects.filter(host=host, taken_at__in=instants).values_list(
            "taken_at", flat=True
        )
    )
    newer = locked.last_sample_at is None or newest.taken_at > locked.last_sample_at
    Host.objects.filter(pk=host.pk).update(
        last_seen_at=now,
        **({"last_sample_at": newest.taken_at, "last_metrics": metrics} if newer else {}),
    )
    verifying = Execution.objects.filter(host=host, state=ExecutionState.VERIFYING).exists()
    return LockedHost(stored, verifying)


def stored_verdicts(host: Host, instants: Sequence[datetime]) -> dict[datetime, SampleVerdict]:
    """The verdicts already given to the stored samples at `instants`, marked duplicate."""
    rows = MetricSample.objects.filter(host=host, taken_at__in=instants).select_related("ticket")
    return {
        row.taken_at: SampleVerdict(
            taken_at=row.taken_at,
            severity=Severity(row.severity).label,
            confidence=round(row.confidence, 4),
            category=row.category or None,
            decision=NO_ACTION,
            ticket_id=row.ticket.ticket_id if row.ticket else None,
            explanation=tuple((name, value) for name, value in row.explanation),
            duplicate=True,
        )
        for row in rows
    }


def problems_by_category(verdicts: Mapping[int, Classification]) -> dict[str, list[int]]:
    """Indexes of the non-healthy samples, grouped by each problem they show: a sample with
    disk and memory both full is in the disk group and in the memory group."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, verdict in verdicts.items():
        if verdict.severity == Severity.NO_ACTION:
            continue
        for category in verdict.categories or ((verdict.category,) if verdict.category else ()):
            groups[category].append(i)
    return dict(sorted(groups.items()))


def primary(verdict: Classification, category: str) -> bool:
    """Is `category` the sample's strongest problem (the ticket the sample row points at,
    and the decision its answer names)?"""
    return verdict.category == category


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

    decision = decide_ticket(
        ticket,
        severity=worst.severity,
        confidence=worst.confidence,
        explanation=worst.explanation,
        probabilities=worst.verdict.probabilities,
        now=now,
        sample_id=worst.pk,
        model_version_id=model_version_id,
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


def redecide_ticket(
    ticket: Ticket, *, cause: str, now: datetime, events: list[PendingEvent]
) -> Decision | None:
    """Decide a locked open ticket again, on the readings its last decision was made on,
    after what that decision relied on changed (`cause`). None without such readings."""
    last = ticket.decisions.select_related("sample").order_by("-created_at").first()
    sample = last.sample if last is not None else None
    if sample is None:
        return None
    decision = decide_ticket(
        ticket,
        severity=sample.severity,
        confidence=sample.confidence,
        explanation=sample.explanation,
        now=now,
        sample_id=sample.pk,
        model_version_id=sample.model_version_id,
    )
    act_on_decision(ticket, decision, now, events, cause=cause)
    return decision


def act_on_decision(
    ticket: Ticket,
    decision: Decision,
    now: datetime,
    events: list[PendingEvent],
    cause: str = "",
) -> None:
    """NO_ACTION and shadow decisions are recorded; AUTO_HEAL queues; the rest go to people.

    `cause`: why the ticket was decided again, when it was.
    """
    conclusion = decision.reasons[-1] if decision.reasons else ""
    again = f" (decided again: {cause})" if cause else ""
    events.append(
        event(
            "system",
            "decision.made",
            decision,
            f"{ticket.ticket_id}{again}: {conclusion}",  # the conclusion names the outcome
            ticket_id=ticket.ticket_id,
            data={
                "cause": cause,
                "runbook_version": decision.runbook_version,
                "action": decision.action,
                "commands": decision.commands,
                "outcome": decision.outcome,
                "model_outcome": decision.model_outcome,
                "policy": decision.policy.name if decision.policy else None,
                "policy_version": decision.policy_version,
                "runbook": decision.runbook.name if decision.runbook else None,
                "reasons": decision.reasons,
                "safety_checks": decision.safety_checks,
                "reliability": decision.reliability,
            },
        )
    )
    if decision.outcome == NO_ACTION or decision.shadow:
        return
    if executes_automatically(decision):
        queue_execution(
            ticket=ticket,
            runbook=decision.runbook,
            idempotency_key=f"decision:{decision.pk}",
            now=now,
            events=events,
            decision=decision,
        )
    elif decision.allowed and decision.runbook is not None:
        request_approval(
            ticket=ticket,
            decision=decision,
            runbook=decision.runbook,
            required_approvals=decision.required_approvals,
            now=now,
            events=events,
        )
    else:
        events += escalate_ticket(ticket, "no runbook may run under the policy")
