"""The metrics flow, top to bottom as DESIGN.md draws it.

agent samples -> feature matrix -> severity model (one batch) -> stored samples
-> fresh metrics verify running remediations -> tickets opened or counted ->
decision -> NO_ACTION recorded / AUTO_HEAL execution queued / HITL_REQUIRED
approval requested -> audit events, all in one transaction per request.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from governance.approvals import request_approval
from governance.audit import PendingEvent, append_events, event
from governance.decisions import decide_ticket, executes_automatically
from governance.engine import NO_ACTION
from governance.models import Decision
from remediation.choices import TICKET_OPEN_STATUSES, Category, TicketStatus
from remediation.executions import queue_execution, verify_with_samples
from remediation.models import Counter, Host, Ticket
from scoring.choices import Severity
from scoring.features import Reading, build_features
from scoring.inference import Classification, classify
from scoring.models import MetricSample
from scoring.registry import serving_model

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


def ingest_samples(host: Host, readings: Sequence[Reading], now: datetime) -> list[SampleVerdict]:
    """Store, classify and act on one agent's batch; returns a verdict per reading, in order."""
    model = serving_model()
    previous = latest_reading(host)
    features = build_features(readings, {host.name: previous} if previous else {})
    verdicts = classify(model.estimator, features, model.thresholds)

    with transaction.atomic():
        # First, so the row lock it takes serialises this host's requests: two batches
        # showing the same new problem must not both open a ticket for it.
        Host.objects.filter(pk=host.pk).update(last_seen_at=now)
        events: list[PendingEvent] = []
        samples = store_samples(host, readings, verdicts, model.version_id, now)
        verify_with_samples(host, samples, now, events)
        outcomes: dict[int, tuple[str, Ticket]] = {}
        for category, indexes in problems_by_category(verdicts).items():
            group = [samples[i] for i in indexes]
            ticket, decision = handle_problem(host, category, group, model.version_id, now, events)
            for i in indexes:
                samples[i].ticket = ticket
                outcomes[i] = (decision.outcome if decision else NO_ACTION, ticket)
        MetricSample.objects.bulk_update([samples[i] for i in outcomes], ["ticket"])
        append_events(events)

    return [
        SampleVerdict(
            taken_at=reading.taken_at,
            severity=Severity(verdict.severity).label,
            confidence=round(verdict.confidence, 4),
            category=verdict.category,
            decision=outcomes[i][0] if i in outcomes else NO_ACTION,
            ticket_id=outcomes[i][1].ticket_id if i in outcomes else None,
            explanation=verdict.explanation,
        )
        for i, (reading, verdict) in enumerate(zip(readings, verdicts, strict=True))
    ]


def latest_reading(host: Host) -> Reading | None:
    """The host's last stored sample, for the first reading's deltas (one indexed query)."""
    last = MetricSample.objects.filter(host=host).order_by("-taken_at").first()
    return last.as_reading(host.name) if last else None


def store_samples(
    host: Host,
    readings: Sequence[Reading],
    verdicts: Sequence[Classification],
    model_version_id: int,
    now: datetime,
) -> list[MetricSample]:
    rows = [
        MetricSample(
            host=host,
            taken_at=reading.taken_at,
            received_at=now,
            disk_usage=reading.disk_usage,
            memory_usage=reading.memory_usage,
            cpu_usage=reading.cpu_usage,
            dns_latency_ms=reading.dns_latency_ms,
            firewall_change_requested=bool(reading.firewall_change_requested),
            severity=verdict.severity,
            confidence=verdict.confidence,
            category=verdict.category or "",
            explanation=[[name, value] for name, value in verdict.explanation],
            model_version_id=model_version_id,
        )
        for reading, verdict in zip(readings, verdicts, strict=True)
    ]
    return MetricSample.objects.bulk_create(rows)


def problems_by_category(verdicts: Sequence[Classification]) -> dict[str, list[int]]:
    """Indexes of the non-healthy samples, grouped by the category their explanation names."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, verdict in enumerate(verdicts):
        if verdict.severity != Severity.NO_ACTION and verdict.category:
            groups[verdict.category].append(i)
    return dict(sorted(groups.items()))


def handle_problem(
    host: Host,
    category: str,
    samples: Sequence[MetricSample],
    model_version_id: int,
    now: datetime,
    events: list[PendingEvent],
) -> tuple[Ticket, Decision | None]:
    """Open the host's ticket for `category` or count the repeat on it, deciding when needed.

    Returns the ticket and the decision that applies to it now.
    """
    worst = max(samples, key=lambda s: (s.severity, s.taken_at))
    latest = max(samples, key=lambda s: s.taken_at)
    ticket = (
        Ticket.objects.select_for_update()
        .filter(host=host, category=category, status__in=list(TICKET_OPEN_STATUSES))
        .first()
    )
    if ticket is None:
        ticket = open_ticket(host, category, worst, now, events)
        needs_decision = True
    else:
        needs_decision = ticket.status == TicketStatus.OPEN and worst.severity > ticket.severity
        ticket.occurrence_count += len(samples)
        ticket.severity = max(ticket.severity, worst.severity)
        ticket.confidence = latest.confidence
        ticket.last_seen_at = now
        ticket.save(update_fields=["occurrence_count", "severity", "confidence", "last_seen_at"])
    if not needs_decision:
        return ticket, ticket.decisions.order_by("-created_at").first()

    decision = decide_ticket(
        ticket,
        severity=worst.severity,
        confidence=worst.confidence,
        explanation=worst.explanation,
        now=now,
        sample=worst,
        model_version_id=model_version_id,
    )
    act_on_decision(ticket, decision, now, events)
    return ticket, decision


def open_ticket(
    host: Host, category: str, sample: MetricSample, now: datetime, events: list[PendingEvent]
) -> Ticket:
    ticket = Ticket.objects.create(
        ticket_id=next_ticket_id(),
        title=ticket_title(host, category, sample),
        host=host,
        category=category,
        severity=sample.severity,
        confidence=sample.confidence,
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
    """INC-000123: numbered under a short row lock, so ids never repeat across processes."""
    counter = Counter.objects.select_for_update().get(name="ticket")
    counter.value += 1
    counter.save(update_fields=["value"])
    return f"INC-{counter.value:06d}"


def ticket_title(host: Host, category: str, sample: MetricSample) -> str:
    metric, template = TITLE_METRIC.get(category, ("", f"{category} problem"))
    value = getattr(sample, metric, None) if metric else None
    return f"{template.format(value) if value is not None else template} on {host.name}"


def act_on_decision(
    ticket: Ticket, decision: Decision, now: datetime, events: list[PendingEvent]
) -> None:
    """NO_ACTION and shadow decisions are recorded; AUTO_HEAL queues; the rest go to people."""
    conclusion = decision.reasons[-1] if decision.reasons else ""
    events.append(
        event(
            "system",
            "decision.made",
            decision,
            f"{decision.outcome} for {ticket.ticket_id}: {conclusion}",
            ticket_id=ticket.ticket_id,
            data={
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
        ticket.move_to(TicketStatus.ESCALATED)
        ticket.save(update_fields=["status", "resolved_at"])
        events.append(
            event(
                "system",
                "ticket.escalated",
                ticket,
                f"{ticket.ticket_id} needs manual handling: no runbook may run under the policy",
                ticket_id=ticket.ticket_id,
            )
        )
