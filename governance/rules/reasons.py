"""The reason lines of a decision, in the words people read.

What the model said, the escalation rules that fired, the runbook's risk and each
threshold, safety check or pattern requirement the ticket misses, and the conclusion
that is always the last line. The engine (governance/rules/engine.py) and dispatch
(governance/rules/dispatch.py) append them in the order they check; a value a global
ceiling tightened names the ceiling (ceiling_note).
"""

import math
from collections.abc import Mapping
from datetime import datetime

from governance.choices import AutonomyLevel, SecuritySeverity
from governance.rules.checks import WEEKDAYS, hosts_after, local_time, risk_level
from governance.rules.facts import (
    AUTO_HEAL,
    NO_ACTION,
    OUTCOME_BY_SEVERITY,
    ModelOutput,
    PolicySnapshot,
    RunbookFacts,
    Statistics,
    TicketFacts,
)
from governance.rules.labels import (
    OUTCOME_LABELS,
    action_type_label,
    class_name,
    model_statement,
    percent,
    with_code,
)
from scoring.reliability import ReliabilityBreakdown

SECURITY_RANK = {
    SecuritySeverity.NONE.value: 0,
    SecuritySeverity.LOW.value: 1,
    SecuritySeverity.MEDIUM.value: 2,
    SecuritySeverity.HIGH.value: 3,
    SecuritySeverity.CRITICAL.value: 4,
}
AUTONOMY = {
    AutonomyLevel.L0_MANUAL.value: "L0 (manual)",
    AutonomyLevel.L1_ASSISTED.value: "L1 (assisted: a person approves every action)",
    AutonomyLevel.L2_CONDITIONAL.value: "L2 (conditional: acts, people are notified)",
    AutonomyLevel.L3_BOUNDED.value: "L3 (bounded: acts within limits, a supervisor can override)",
}


def ceiling_note(policy: PolicySnapshot, name: str) -> str:
    """The words naming the global ceiling that tightened the policy's `name`, or ""."""
    for field_name, note in policy.ceilings:
        if field_name == name:
            return f" (global ceiling {note})"
    return ""


def autonomy_name(level: int) -> str:
    return AUTONOMY.get(level, f"L{level} (not allowed)")


def as_sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}."


def joined(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def model_line(model: ModelOutput, outcome: str) -> str:
    if model.statement:
        return model.statement
    if model.severity not in OUTCOME_BY_SEVERITY:
        return f"The model returned an unknown severity {model.severity}: treated as {outcome}."
    return model_statement(model.severity, model.confidence, model.probabilities, model.explanation)


def escalation_lines(ticket: TicketFacts, policy: PolicySnapshot | None) -> list[str]:
    """PHASE-65's escalation rules on the ticket's facts: each fired rule's line."""
    lines = []
    if ticket.affects_billing:
        lines.append("Escalation: the problem affects billing, so a person decides.")
    if ticket.data_integrity:
        lines.append("Escalation: data integrity is involved, so a person decides.")
    sla = policy.customer_impact_sla_minutes if policy else None
    # Only a defined SLA can be exceeded (PHASE-65: "customer impact > defined SLA").
    if sla is not None and ticket.customer_impact_minutes > sla:
        lines.append(
            f"Escalation: expected customer impact of {ticket.customer_impact_minutes:g} minutes "
            f"exceeds the {sla:g}-minute SLA, so a person decides."
        )
    # An unknown severity is read as critical: a typo must not silence a security alert.
    rank = SECURITY_RANK.get(ticket.security_severity, SECURITY_RANK["critical"])
    if rank >= SECURITY_RANK["high"]:
        lines.append(
            f"Escalation: security severity is {ticket.security_severity}, so a person decides."
        )
    return lines


def runbook_lines(runbook: RunbookFacts | None, hard_limits: list[str]) -> list[str]:
    if runbook is None:
        return ["No runbook: manual handling."]
    risk = risk_level(runbook)
    kind = with_code(action_type_label(runbook.action_type), runbook.action_type)
    return [f"Runbook {runbook.name} is a {kind} action: {risk} risk.", *hard_limits]


def reliability_line(reliability: ReliabilityBreakdown) -> str:
    r = reliability
    return (
        f"Reliability {r.overall_score:.1f} ({r.confidence_level.replace('_', ' ')}): "
        f"AI confidence {r.ai_confidence:.1f}, human feedback {r.human_feedback:.1f}, "
        f"success history {r.success_history:.1f}, pattern match {r.pattern_match:.1f}."
    )


def threshold_lines(
    runbook: RunbookFacts,
    model: ModelOutput,
    reliability: ReliabilityBreakdown,
    policy: PolicySnapshot,
) -> list[str]:
    """Step 4: each threshold the ticket misses, including PHASE-65's confidence floor."""
    lines = []
    if runbook.action_type not in policy.allowed_action_types:
        runs = ", ".join(action_type_label(kind) for kind in sorted(policy.allowed_action_types))
        runs = runs or "none"
        kind = with_code(action_type_label(runbook.action_type), runbook.action_type)
        lines.append(
            f"Policy {policy.name} does not run {kind} actions automatically (it runs: {runs})."
        )
    confidence = model.confidence if math.isfinite(model.confidence) else 0.0
    # What is compared is the probability of the class the model picked.
    probability = f"probability for {class_name(model.severity)}, {percent(confidence)},"
    if confidence < policy.min_confidence_score:
        lines.append(
            f"The model's {probability} is below the policy minimum "
            f"{percent(policy.min_confidence_score)}."
        )
    if reliability.overall_score < policy.min_reliability_score:
        lines.append(
            f"Reliability {reliability.overall_score:.1f} is below the policy minimum "
            f"{policy.min_reliability_score:.1f}{ceiling_note(policy, 'min_reliability_score')}."
        )
    if confidence < policy.min_auto_confidence_escalation:
        lines.append(
            f"Escalation: the model's {probability} is below "
            f"{percent(policy.min_auto_confidence_escalation)}, so a person decides."
        )
    return lines


def safety_failure_lines(
    checks: Mapping[str, bool], policy: PolicySnapshot, stats: Statistics, now: datetime
) -> list[str]:
    """One line per failed safety check."""
    lines = []
    if not checks["time_window_ok"]:
        lines.append(time_window_line(policy, now))
    if not checks["rate_limit_ok"]:
        lines.append(rate_limit_line(policy, stats))
    # A missing backup or an unhealthy host is a hard limit, reported at step 3.
    if not checks["blast_radius_ok"]:
        lines.append(blast_radius_line(policy, stats))
    return lines


def rate_limit_line(policy: PolicySnapshot, stats: Statistics) -> str:
    return (
        f"Rate limit reached: {stats.actions_last_hour} actions in the last hour, "
        f"policy {policy.name} allows {policy.max_actions_per_hour} an hour"
        f"{ceiling_note(policy, 'max_actions_per_hour')}."
    )


def time_window_line(policy: PolicySnapshot, now: datetime) -> str:
    local = local_time(policy, now)
    if local is None:
        return f"Unknown time zone {policy.timezone!r} in policy {policy.name}: no time window."
    start, end = policy.allowed_hours_start, policy.allowed_hours_end
    hours = (
        f"{0 if start is None else start:02d}:00-{24 if end is None else end:02d}:00"
        if start is not None or end is not None
        else "any hour"
    )
    days = {name.lower() for name in policy.allowed_days}
    on = ", ".join(day for day in WEEKDAYS if day in days) if days else "every day"
    return (
        f"Outside policy {policy.name}'s time window ({hours}, {on}, {policy.timezone}): "
        f"it is {WEEKDAYS[local.weekday()]} {local:%H:%M} there."
    )


def blast_radius_line(policy: PolicySnapshot, stats: Statistics) -> str:
    scope = f"hosts labelled {policy.blast_radius_label}" if policy.blast_radius_label else "hosts"
    limits = []
    if policy.blast_radius_max_hosts is not None:
        limits.append(f"{policy.blast_radius_max_hosts} hosts")
    if policy.blast_radius_max_percent is not None:
        limits.append(f"{policy.blast_radius_max_percent:g}% of them")
    return (
        f"Blast radius: this would put {hosts_after(stats)} of {stats.hosts_in_scope} {scope} "
        f"under remediation at once; policy {policy.name} allows at most {' and '.join(limits)}."
    )


def pattern_lines(policy: PolicySnapshot, stats: Statistics) -> list[str]:
    """Step 6: what the ticket's history lacks for the policy."""
    lines = []
    if stats.similar_resolved_tickets < policy.min_similar_tickets:
        lines.append(
            f"Only {stats.similar_resolved_tickets} similar resolved tickets; policy "
            f"{policy.name} needs {policy.min_similar_tickets}."
        )
    rate, minimum = stats.positive_feedback_rate, policy.min_positive_feedback_rate
    if rate is None and minimum > 0:
        lines.append(
            f"No feedback yet, and policy {policy.name} needs a positive feedback rate of "
            f"{minimum:.0%}."
        )
    elif rate is not None and rate < minimum:
        lines.append(
            f"Positive feedback rate {rate:.1%} is below the policy minimum {minimum:.1%}."
        )
    pattern = stats.pattern
    # A policy that asks for similar tickets asks for a known pattern too (the seed's step 6).
    if pattern is None and policy.min_similar_tickets > 0:
        lines.append("The ticket matches no known pattern yet, so a person approves it.")
    known_good = pattern is not None and (pattern.eligible or pattern.known_good)
    if pattern is not None and not known_good and policy.min_similar_tickets > 0:
        lines.append(
            f"The ticket matches a known pattern ({pattern.occurrence_count} occurrences, "
            f"{pattern.positive_feedback_rate:.0%} positive) not yet eligible for "
            f"auto-remediation{ceiling_note(policy, 'pattern_eligibility')}."
        )
    return lines


def conclusion_line(
    outcome: str,
    model_outcome: str,
    may_run: bool,
    approvals: int,
    runbook: RunbookFacts | None,
    ticket: TicketFacts,
    level: int,
    shadow: bool,
) -> str:
    """The last reason line: the outcome and what happens next."""
    # The label people read, the code beside it for those who search the trail.
    model_label = OUTCOME_LABELS.get(model_outcome, model_outcome).lower()
    raised = f", raised from the model's {model_label}" if outcome != model_outcome else ""
    if outcome == NO_ACTION:
        what = "nothing to do"
    elif outcome == AUTO_HEAL and runbook is not None:
        after = (
            "a supervisor can override"
            if level == AutonomyLevel.L3_BOUNDED
            else "people are notified"
        )
        what = f"run {runbook.name} on {ticket.host} automatically; {after}"
    elif may_run and runbook is not None:
        plural = "s" if approvals != 1 else ""
        what = f"runbook {runbook.name} waits for {approvals} approval{plural}"
    else:
        what = "no runbook may run; a person handles the ticket by hand"
    recorded = " (shadow mode: not executed)" if shadow else ""
    label = OUTCOME_LABELS.get(outcome, outcome).lower()
    return f"Decision: {with_code(label, outcome)}{raised}: {what}{recorded}."
