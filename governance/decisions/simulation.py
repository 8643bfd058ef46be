"""Policy simulation: replay a period's tickets through a draft policy before anyone enables it.

replay() is pure: it walks the tickets in time order, asks the engine what the
draft would have decided, and keeps its own tally of the actions the draft
would have taken, so rate limits and blast radius bind as they would have.
load_replay() reads a period from the database into those values.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db.models import Prefetch

from governance.decisions.facts import policy_snapshot, runbook_facts, ticket_facts
from governance.decisions.stats import hosts_in_scope, statistics
from governance.models import Decision, Policy
from governance.rules.engine import decide
from governance.rules.facts import (
    AUTO_HEAL,
    HITL_REQUIRED,
    NO_ACTION,
    OUTCOME_BY_SEVERITY,
    ModelOutput,
    PolicySnapshot,
    RunbookFacts,
    Statistics,
    Switches,
    TicketFacts,
)
from governance.rules.facts import Decision as EngineDecision
from remediation.models import Runbook, Ticket

# How long a simulated action holds its host, for the blast-radius count.
ACTION_HOLDS_HOST = timedelta(minutes=10)
SEVERITY_BY_OUTCOME = {outcome: severity for severity, outcome in OUTCOME_BY_SEVERITY.items()}
CAUTIOUS_SEVERITY = SEVERITY_BY_OUTCOME[HITL_REQUIRED]

AUTO_HEALED = "auto-healed"
TO_A_PERSON = "sent to a person"
BLOCKED = "blocked"
RECORDED = "recorded only"


@dataclass(frozen=True)
class ReplayTicket:
    ticket_id: str
    opened_at: datetime
    facts: TicketFacts
    model: ModelOutput
    runbook: RunbookFacts | None
    stats: Statistics
    actual: str  # what actually happened, in the same words as the draft's outcome


@dataclass(frozen=True)
class SimulationReport:
    policy: str
    version: int  # the policy's history id that was replayed
    tickets: int
    draft: dict[str, int]
    actual: dict[str, int]
    held_by_blast_radius: tuple[str, ...]  # hosts the limit would have held
    changed: tuple[tuple[str, str, str], ...] = field(default=())  # (ticket, actual, draft)


def classify(decision: EngineDecision) -> str:
    """The one word a simulation report uses for a decision."""
    if decision.outcome == NO_ACTION:
        return RECORDED
    if decision.shadow:
        return RECORDED
    if decision.executes_automatically:
        return AUTO_HEALED
    return TO_A_PERSON if decision.allowed else BLOCKED


def in_blast_scope(labels: Mapping[str, str], label: str) -> bool:
    """Whether a host with `labels` counts towards a blast-radius limit over `label` (key=value)."""
    if not label:
        return True
    key, _, value = label.partition("=")
    return labels.get(key) == value


def replay(
    policy: PolicySnapshot, tickets: list[ReplayTicket], fleet_size: int
) -> SimulationReport:
    """What `policy` would have done with `tickets`, next to what actually happened.

    `fleet_size` is the number of hosts in the policy's blast-radius scope. Only
    the draft's own simulated actions count towards its rate limit and blast
    radius, and pauses are left out: they are a person's call, not the policy's.
    """
    draft = replace(policy, mode="enforce", enabled=True)
    actions: list[datetime] = []
    holding: dict[str, datetime] = {}  # host in scope -> until when a simulated action holds it
    draft_counts: Counter[str] = Counter()
    actual_counts: Counter[str] = Counter()
    held: list[str] = []
    changed = []
    for ticket in sorted(tickets, key=lambda t: (t.opened_at, t.ticket_id)):
        now = ticket.opened_at
        active = {host for host, until in holding.items() if until > now}
        stats = replace(
            ticket.stats,
            # Tickets come in time order, so every earlier action is at or before now,
            # and an action at this very instant counts, as it does in production.
            actions_last_hour=sum(1 for at in actions if at >= now - timedelta(hours=1)),
            hosts_under_remediation=len(active),
            hosts_in_scope=max(fleet_size, 1),
            host_under_remediation=ticket.facts.host in active,
        )
        decision = decide(ticket.facts, ticket.model, draft, ticket.runbook, Switches(), stats, now)
        outcome = classify(decision)
        draft_counts[outcome] += 1
        actual_counts[ticket.actual] += 1
        if outcome != ticket.actual:
            changed.append((ticket.ticket_id, ticket.actual, outcome))
        if decision.safety_checks.get("blast_radius_ok") is False:
            held.append(ticket.facts.host)
        if outcome == AUTO_HEALED:
            actions.append(now)
            if in_blast_scope(ticket.facts.host_labels, draft.blast_radius_label):
                holding[ticket.facts.host] = now + ACTION_HOLDS_HOST
    return SimulationReport(
        policy=policy.name,
        version=policy.version,
        tickets=len(tickets),
        draft=dict(draft_counts),
        actual=dict(actual_counts),
        held_by_blast_radius=tuple(sorted(set(held))),
        changed=tuple(changed),
    )


def actual_outcome(decision: Decision | None) -> str:
    """What a stored decision did, in the report's words (classify() for stored rows)."""
    if decision is None:
        return RECORDED
    if decision.outcome == NO_ACTION or decision.shadow:
        return RECORDED
    if decision.outcome == AUTO_HEAL and decision.allowed:
        return AUTO_HEALED
    return TO_A_PERSON if decision.allowed else BLOCKED


def model_output(ticket: Ticket, first: Decision | None) -> ModelOutput:
    """The model's verdict when the ticket was first decided, as stored on that decision.

    A ticket never decided falls back to its worst sample, then to the ticket itself.
    """
    if first is not None:
        return ModelOutput(
            # An outcome this version does not know is read as the most cautious one.
            severity=SEVERITY_BY_OUTCOME.get(first.model_outcome, CAUTIOUS_SEVERITY),
            confidence=first.confidence,
            explanation=_explanation(first.explanation),
            probabilities=tuple(first.probabilities),
        )
    worst = ticket.samples.order_by("-severity", "-taken_at").first()
    if worst is not None:
        return ModelOutput(
            severity=worst.severity,
            confidence=worst.confidence,
            explanation=_explanation(worst.explanation),
        )
    return ModelOutput(severity=ticket.severity, confidence=ticket.confidence)


def _explanation(pairs: list[list]) -> tuple[tuple[str, float], ...]:
    return tuple((str(name), float(value)) for name, value in pairs)


def load_replay(policy: Policy, since: datetime, until: datetime) -> list[ReplayTicket]:
    """The tickets of `policy`'s category opened in [since, until), as replay inputs.

    Each ticket's statistics are read as of when it opened
    (governance.decisions.deciding.statistics).
    """
    runbook = (
        Runbook.objects.filter(category=policy.category, enabled=True).order_by("name").first()
    )
    first_decisions = Prefetch(
        "decisions", queryset=Decision.objects.order_by("created_at", "pk"), to_attr="in_order"
    )
    tickets = (
        Ticket.objects.filter(category=policy.category, opened_at__gte=since, opened_at__lt=until)
        .select_related("host")
        .prefetch_related(first_decisions)
        .order_by("opened_at", "pk")
    )
    replayed = []
    for ticket in tickets:
        first = ticket.in_order[0] if ticket.in_order else None
        replayed.append(
            ReplayTicket(
                ticket_id=ticket.ticket_id,
                opened_at=ticket.opened_at,
                facts=ticket_facts(ticket),
                model=model_output(ticket, first),
                runbook=runbook_facts(runbook) if runbook else None,
                stats=statistics(ticket, policy, ticket.opened_at),
                actual=actual_outcome(first),
            )
        )
    return replayed


def simulate_policy(policy: Policy, *, days: int, now: datetime) -> SimulationReport:
    """Replay the last `days` days through `policy` as a draft (enabled, enforcing)."""
    tickets = load_replay(policy, now - timedelta(days=days), now)
    fleet_size = hosts_in_scope(policy.blast_radius_label).count()
    return replay(policy_snapshot(policy), tickets, fleet_size)
