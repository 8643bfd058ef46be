"""Decides a ticket: reads what the decision depends on, asks the engine, stores the answer.

governance/rules/engine.py decides from values alone; decide_ticket() gathers those values
(governance/decisions/facts.py, governance/decisions/stats.py), counts a new ticket on its
learned pattern, and stores the engine's Decision whole as a governance.models.Decision.
decide_on_sample() is the usual way in: a decision on the model's verdict on a stored sample.
"""

from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any, Protocol

from feedback import patterns
from governance.decisions.facts import (
    DecidedCommand,
    decided_command,
    enabled_policy,
    policy_snapshot,
    runbook_facts,
    runbook_for,
    runbook_version,
    ticket_facts,
)
from governance.decisions.stats import fleet_counts, lock_fleet_limits, statistics
from governance.models import Decision
from governance.pauses.state import pauses_for
from governance.rules.engine import decide
from governance.rules.facts import Decision as EngineDecision
from governance.rules.facts import ModelOutput, Switches
from remediation.models import Runbook, Ticket


class ScoredSample(Protocol):
    """A stored sample and the model's verdict on it: a scoring MetricSample row, or a
    sample the pipeline has just stored."""

    @property
    def pk(self) -> int: ...

    @property
    def severity(self) -> int: ...

    @property
    def confidence(self) -> float: ...

    @property
    def explanation(self) -> list: ...


def decide_on_sample(
    ticket: Ticket,
    sample: ScoredSample,
    *,
    model_version_id: int | None,
    now: datetime,
    **options: Any,
) -> Decision:
    """decide_ticket() on the model's verdict on `sample`, which the decision binds to.

    `options` are decide_ticket()'s other keywords (probabilities, occurrences,
    pattern_terms).
    """
    return decide_ticket(
        ticket,
        severity=sample.severity,
        confidence=sample.confidence,
        explanation=sample.explanation,
        sample_id=sample.pk,
        model_version_id=model_version_id,
        now=now,
        **options,
    )


def decide_ticket(
    ticket: Ticket,
    *,
    severity: int,
    confidence: float,
    explanation: list,
    now: datetime,
    sample_id: int | None = None,
    model_version_id: int | None = None,
    occurrences: list[patterns.Occurrence] | None = None,
    probabilities: Sequence[float] = (),
    pattern_terms: Sequence[str] | None = None,
    statement: str = "",
) -> Decision:
    """Decide what to do about `ticket` now and store the decision whole.

    `probabilities` are the model's for each class on the sample (Classification's); a
    sample decided again without them keeps those its earlier decision recorded.

    A ticket another system opened (remediation/intake.py) passes the key terms of its
    text as `pattern_terms` (its pattern signal instead of the model's explanation) and,
    when no reading of the host shows the problem, a `statement` saying what the outcome
    rests on instead of the model's verdict.

    A ticket decided for the first time counts on its learned pattern: at once, or,
    given `occurrences`, appended there for the caller to record with
    patterns.record_occurrences just before its commit (the pattern's row is shared
    by every host with the same problem).
    """
    if not probabilities and sample_id is not None:
        probabilities = recorded_probabilities(sample_id)
    policy = enabled_policy(ticket.category)
    runbook = runbook_for(ticket.category)
    switches = Switches(
        active_pauses=tuple(
            pause.describe() for pause in pauses_for(ticket.host_id, ticket.category, now)
        )
    )
    snapshot = policy_snapshot(policy) if policy else None
    # A ticket is counted on a pattern once, at its first decision.
    found = (
        _pattern_match(ticket, explanation, pattern_terms) if ticket.pattern_id is None else None
    )
    command = decided_command(runbook, ticket) if runbook else None
    inputs = (
        ticket_facts(ticket),
        _model_output(severity, confidence, explanation, probabilities, statement),
        snapshot,
        runbook_facts(runbook, command) if runbook else None,
        switches,
    )
    stats = statistics(ticket, policy, now, found)
    result = decide(*inputs, stats, now)
    if result.executes_automatically:
        # The rate limit and the blast radius are fleet-wide counts: two decisions counting
        # at once would both see room for one more. Only a decision that acts by itself
        # spends them, so only it counts again under the fleet-limits lock (held until its
        # execution commits); the rest of a storm never waits for that lock.
        lock_fleet_limits()
        stats = replace(stats, **asdict(fleet_counts(ticket, policy, now)))
        result = decide(*inputs, stats, now)
    if found is not None:
        _count_on_pattern(ticket, found, result, confidence, now, occurrences)
    return Decision.objects.create(
        ticket=ticket,
        sample_id=sample_id,
        model_version_id=model_version_id,
        policy=policy,
        policy_version=snapshot.version if snapshot else None,
        **_command_fields(runbook, command),
        **_outcome_fields(result),
        confidence=confidence,
        explanation=[[name, value] for name, value in explanation],
        probabilities=[float(p) for p in probabilities],
        created_at=now,
    )


def _model_output(
    severity: int,
    confidence: float,
    explanation: list,
    probabilities: Sequence[float],
    statement: str,
) -> ModelOutput:
    return ModelOutput(
        severity=severity,
        confidence=confidence,
        explanation=tuple((str(name), float(value)) for name, value in explanation),
        probabilities=tuple(float(p) for p in probabilities),
        statement=statement,
    )


def _pattern_match(
    ticket: Ticket, explanation: list, pattern_terms: Sequence[str] | None
) -> patterns.PatternMatch:
    """The learned pattern a new ticket matches, by its words and its readings (the model's
    explanation); its key terms for people are the explanation's features, or the words
    of a ticket another system opened."""
    text = f"{ticket.title}\n{ticket.description}"
    if pattern_terms is None:
        return patterns.match(ticket.category, explanation, text)
    vectors = patterns.ticket_vectors(text, explanation)
    return patterns.match_terms(ticket.category, tuple(pattern_terms), vectors)


def _count_on_pattern(
    ticket: Ticket,
    found: patterns.PatternMatch,
    result: EngineDecision,
    confidence: float,
    now: datetime,
    occurrences: list[patterns.Occurrence] | None,
) -> None:
    """Count the ticket on its pattern at once, or append it to `occurrences` for the
    caller to record just before its commit."""
    occurrence = patterns.Occurrence(
        ticket,
        found,
        confidence=confidence,
        reliability=result.reliability.overall_score if result.reliability else 0.0,
        now=now,
    )
    if occurrences is None:
        patterns.record_occurrences([occurrence])
    else:
        occurrences.append(occurrence)


def _command_fields(runbook: Runbook | None, command: DecidedCommand | None) -> dict[str, Any]:
    """A stored decision's fields for exactly what it would run: the runbook, its version,
    the action and the argv filled from the ticket's parameters."""
    return {
        "runbook": runbook,
        "runbook_version": runbook_version(runbook) if runbook else None,
        "action": runbook.action if runbook else "",
        "argv": command.argv if command else [],
        "rollback_argv": command.rollback_argv if command else [],
        "argv_digest": command.digest if command else "",
    }


def _outcome_fields(result: EngineDecision) -> dict[str, Any]:
    """A stored decision's fields for what the engine decided, whole."""
    return {
        "outcome": result.outcome,
        "model_outcome": result.model_outcome,
        "allowed": result.allowed,
        "requires_approval": result.requires_approval,
        "required_approvals": result.required_approvals,
        "action_type": result.action_type,
        "risk_level": result.risk_level,
        "shadow": result.shadow,
        "reasons": list(result.reasons),
        "safety_checks": dict(result.safety_checks),
        "reliability": asdict(result.reliability) if result.reliability else {},
    }


def recorded_probabilities(sample_id: int) -> list[float]:
    """The class probabilities the newest decision on this sample recorded (or none)."""
    recorded = (
        Decision.objects.filter(sample_id=sample_id)
        .order_by("-created_at")
        .values_list("probabilities", flat=True)
        .first()
    )
    return list(recorded or [])
