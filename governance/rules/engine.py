"""The decision engine: one pure function from facts to a Decision.

No ORM, no clock: governance/decisions/deciding.py reads the database into these frozen
dataclasses, calls decide(), and writes the result back.

decide() follows the seed's eight steps with PHASE-65's rules on top:

0. the model's verdict, and PHASE-65's escalation rules on the ticket (billing,
   data integrity, customer impact beyond the SLA, security severity >= high);
   a model NO_ACTION stays NO_ACTION unless one of them fires;
1. the ticket must opt in to auto-remediation;
2. an enabled policy must cover the category;
3. the runbook's risk, and its hard limits (forbidden commands, systems outside
   the policy, no rollback plan): a runbook past a hard limit may not run at all;
4. action type, confidence and reliability thresholds, PHASE-65's confidence floor;
5. safety checks: time window, rate limit, backup, system health, blast radius;
6. pattern eligibility: similar resolved tickets, positive feedback, known pattern;
7. approval: pauses, critical runbooks, autonomy level, the policy's approval rule;
8. the conclusion, always the last reason line.

What the outcomes mean:

- NO_ACTION: nothing runs; the decision is recorded (allowed is False).
- AUTO_HEAL: the runbook runs without a person (unless the policy is in shadow mode).
- HITL_REQUIRED: a person decides. With allowed=True the runbook waits for
  required_approvals approvals; with allowed=False no runbook may run and a
  person handles the ticket by hand (requires_approval is then False, as there
  is nothing to approve).
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from governance.choices import AutonomyLevel, PolicyMode, RiskLevel, SecuritySeverity
from governance.rules.command_floor import runbook_refusals
from governance.rules.labels import OUTCOME_LABELS, class_name, model_statement
from remediation.choices import ActionType, ForbiddenTouch
from scoring.reliability import (
    FeedbackFact,
    PatternFacts,
    ReliabilityBreakdown,
    ReliabilityInputs,
    reliability_score,
)

NO_ACTION = "NO_ACTION"
AUTO_HEAL = "AUTO_HEAL"
HITL_REQUIRED = "HITL_REQUIRED"
OUTCOMES = (NO_ACTION, AUTO_HEAL, HITL_REQUIRED)
# The model's class number for each outcome (scoring.choices.Severity).
OUTCOME_BY_SEVERITY = {0: NO_ACTION, 1: AUTO_HEAL, 2: HITL_REQUIRED}


@dataclass(frozen=True)
class TicketFacts:
    ticket_id: str
    category: str  # remediation.choices.Category value
    host: str
    host_labels: Mapping[str, str]
    enable_auto_remediation: bool  # metric tickets: True; integrator tickets: as posted
    occurrence_count: int
    affects_billing: bool = False
    data_integrity: bool = False
    customer_impact_minutes: float = 0.0  # expected customer impact if left alone
    security_severity: str = "none"  # governance.choices.SecuritySeverity value


@dataclass(frozen=True)
class ModelOutput:
    severity: int  # 0 NO_ACTION, 1 AUTO_HEAL, 2 HITL_REQUIRED
    confidence: float  # 0-1, the probability of `severity`
    explanation: tuple[tuple[str, float], ...] = ()  # (feature, contribution), strongest first
    # Every class's probability in severity order (scoring.inference.Classification's);
    # empty when not recorded. The class is the one of least expected cost, which may be
    # less probable than one it beat, so its own probability alone can mislead.
    probabilities: tuple[float, ...] = ()
    # Replaces the model's reason line when no model reading stands behind the ticket (one
    # opened by another system, remediation/intake.py): what the outcome rests on instead.
    statement: str = ""


@dataclass(frozen=True)
class RunbookFacts:
    name: str
    action_type: str  # remediation.choices.ActionType value
    system: str  # the kind of system it acts on ("linux", "network", "dns", ...)
    reversible: bool
    has_rollback_plan: bool
    commands: tuple[str, ...]  # what it runs, checked against forbidden_commands
    touches: frozenset[str] = frozenset()  # remediation.choices.ForbiddenTouch values
    # Why it cannot run on this ticket's host as decided (its parameters are missing, the
    # host's agent would refuse it): hard limits, one line each.
    unrunnable: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicySnapshot:
    name: str
    category: str
    version: int  # the policy's history id: which edit of the policy decided
    enabled: bool = True
    mode: str = "enforce"  # governance.choices.PolicyMode value
    autonomy_level: int = 1  # 0-3; 4 never reaches here (validation refuses it)
    min_confidence_score: float = 0.85  # 0-1
    min_reliability_score: float = 80.0  # 0-100
    min_similar_tickets: int = 0
    min_positive_feedback_rate: float = 0.0  # 0-1
    allowed_action_types: frozenset[str] = frozenset({"read_only", "safe_write"})
    allowed_systems: frozenset[str] = frozenset()  # empty: any system
    forbidden_commands: tuple[str, ...] = ("delete", "format", "shutdown")
    allowed_hours_start: int | None = None  # 0-23 local hour; None: any time
    allowed_hours_end: int | None = None  # exclusive; may be < start (22 -> 6 crosses midnight)
    allowed_days: frozenset[str] = frozenset()  # "monday"..."sunday"; empty: every day
    timezone: str = "UTC"
    requires_approval: bool = True
    auto_approve_threshold: float | None = 90.0  # reliability at or above it skips approval
    approvers: tuple[str, ...] = ()
    max_actions_per_hour: int = 10
    requires_rollback_plan: bool = True
    requires_backup: bool = False
    required_approvals: int = 1  # for SAFE_WRITE needing approval
    critical_required_approvals: int = 2  # for CRITICAL_WRITE, irreversible or forbidden
    blast_radius_max_hosts: int | None = None
    blast_radius_max_percent: float | None = None  # of hosts carrying blast_radius_label
    blast_radius_label: str = ""  # "key=value"; empty: the whole fleet
    customer_impact_sla_minutes: float | None = None
    min_auto_confidence_escalation: float = 0.6  # PHASE-65: below it, always escalate
    # (field, note) for each value a global ceiling tightened (governance/rules/ceilings.py): the
    # reasons of a decision that value decided say so.
    ceilings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Switches:
    """The pauses that apply to this ticket (everything, its category, its host)."""

    active_pauses: tuple[
        str, ...
    ] = ()  # one readable line each, e.g. "category disk paused by bob: disk vendor bug"


@dataclass(frozen=True)
class Statistics:
    """What the database knows that the decision depends on, read at decision time."""

    actions_last_hour: int = 0  # executions started for this policy's category in the last hour
    hosts_under_remediation: int = 0  # hosts in the blast-radius scope with an active execution
    hosts_in_scope: int = 1  # hosts in the blast-radius scope (label, or whole fleet)
    host_in_scope: bool = True  # this host carries the blast-radius label (or there is none)
    host_under_remediation: bool = False  # this host already has an active execution
    backup_available: bool = True
    system_healthy: bool = True  # host reporting and not in a worse state than the ticket says
    similar_resolved_tickets: int = 0
    positive_feedback_rate: float | None = None  # category's, 0-1; None: no feedback yet
    feedback: tuple[FeedbackFact, ...] = ()
    category_resolved: int = 0
    category_total: int = 0
    pattern: PatternFacts | None = None
    # The level the ticket's pattern was lowered to (governance.promotions.actions), a cap on the
    # policy's level until it earns its way back; None: the pattern follows its policy.
    pattern_level: int | None = None


@dataclass(frozen=True)
class Decision:
    outcome: str  # NO_ACTION | AUTO_HEAL | HITL_REQUIRED, never below the model's
    model_outcome: str
    allowed: bool  # may the runbook run at all (with approval if required)
    requires_approval: bool
    required_approvals: int  # 0 when no approval is needed
    action_type: str
    risk_level: str  # governance.choices.RiskLevel value
    shadow: bool  # policy in shadow mode: recorded, never executed
    reasons: tuple[str, ...]  # readable lines, in the order the flow checked them
    safety_checks: Mapping[str, bool] = field(
        default_factory=dict
    )  # name -> passed, plus "all_passed"
    reliability: ReliabilityBreakdown | None = None
    policy_name: str = ""
    policy_version: int | None = None

    @property
    def executes_automatically(self) -> bool:
        return self.outcome == AUTO_HEAL and self.allowed and not self.shadow


# Outcomes from least to most cautious: the engine may only move a decision right (rule 1).
CAUTION = {NO_ACTION: 0, AUTO_HEAL: 1, HITL_REQUIRED: 2}

RISK_BY_ACTION_TYPE = {
    ActionType.READ_ONLY.value: RiskLevel.LOW.value,
    ActionType.SAFE_WRITE.value: RiskLevel.MEDIUM.value,
    ActionType.CRITICAL_WRITE.value: RiskLevel.HIGH.value,
}
SECURITY_RANK = {
    SecuritySeverity.NONE.value: 0,
    SecuritySeverity.LOW.value: 1,
    SecuritySeverity.MEDIUM.value: 2,
    SecuritySeverity.HIGH.value: 3,
    SecuritySeverity.CRITICAL.value: 4,
}
# Indexed by datetime.weekday(); the same names as governance.models.WEEKDAYS.
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
AUTONOMY = {
    AutonomyLevel.L0_MANUAL.value: "L0 (manual)",
    AutonomyLevel.L1_ASSISTED.value: "L1 (assisted: a person approves every action)",
    AutonomyLevel.L2_CONDITIONAL.value: "L2 (conditional: acts, people are notified)",
    AutonomyLevel.L3_BOUNDED.value: "L3 (bounded: acts within limits, a supervisor can override)",
}
# The levels at which Warden acts by itself; L0 and L1 always ask a person, and an
# out-of-range level (L4 is refused by validation) is read as asking too.
ACTING_LEVELS = frozenset({AutonomyLevel.L2_CONDITIONAL.value, AutonomyLevel.L3_BOUNDED.value})
TOUCH_NAMES = {touch.value: str(touch.label).lower() for touch in ForbiddenTouch}

# The limits a runbook meets when no enabled policy covers its category: the
# PolicySnapshot defaults at L0. A person may still approve a catalogued runbook,
# never one that runs a forbidden command or has no rollback plan.
NO_POLICY_LIMITS = PolicySnapshot(
    name="default limits",
    category="",
    version=0,
    autonomy_level=AutonomyLevel.L0_MANUAL.value,
)


def decide(
    ticket: TicketFacts,
    model: ModelOutput,
    policy: PolicySnapshot | None,
    runbook: RunbookFacts | None,
    switches: Switches,
    stats: Statistics,
    now: datetime,
) -> Decision:
    """Decide what to do about `ticket` at `now` (an aware datetime).

    Returns a Decision never less cautious than the model, with its reasons in
    the order the flow checked them and the conclusion last. Raises ValueError
    for a naive `now`: a time window needs a real instant.
    """
    if now.utcoffset() is None:
        raise ValueError("decide() needs an aware datetime for `now`")

    model_outcome = OUTCOME_BY_SEVERITY.get(model.severity, HITL_REQUIRED)
    reliability = reliability_score(
        ReliabilityInputs(
            ai_confidence=model.confidence,
            feedback=stats.feedback,
            category_resolved=stats.category_resolved,
            category_total=stats.category_total,
            pattern=stats.pattern,
        )
    )
    active = policy if policy is not None and policy.enabled else None
    limits = active or NO_POLICY_LIMITS
    shadow = active is not None and active.mode == PolicyMode.SHADOW
    critical = _critical_traits(runbook)
    hard_limits = _hard_limits(runbook, limits) + _precondition_failures(runbook, limits, stats)
    allowed = runbook is not None and not hard_limits
    checks: dict[str, bool] = {}  # filled at step 5
    acting_level = limits.autonomy_level  # lowered at step 7 by a demoted pattern
    reasons: list[str] = []

    def conclude(engine_outcome: str) -> Decision:
        outcome = max(model_outcome, engine_outcome, key=CAUTION.__getitem__)
        may_run = allowed and outcome != NO_ACTION
        requires_approval = may_run and outcome == HITL_REQUIRED
        approvals = _required_approvals(limits, critical) if requires_approval else 0
        if shadow:
            reasons.append(
                f"Policy {limits.name} is in shadow mode: this decision is recorded "
                "and nothing is executed."
            )
        reasons.append(
            _conclusion(
                outcome, model_outcome, may_run, approvals, runbook, ticket, acting_level, shadow
            )
        )
        return Decision(
            outcome=outcome,
            model_outcome=model_outcome,
            allowed=may_run,
            requires_approval=requires_approval,
            required_approvals=approvals,
            action_type=runbook.action_type if runbook else "",
            risk_level=_risk_level(runbook),
            shadow=shadow,
            reasons=tuple(reasons),
            safety_checks=checks,
            reliability=reliability,
            policy_name=active.name if active else "",
            policy_version=active.version if active else None,
        )

    # 0. The model's verdict, and the escalation rules that hold whatever it says.
    reasons.append(_model_line(model, model_outcome))
    escalations = _escalations(ticket, active)
    reasons += escalations
    if model_outcome == NO_ACTION and not escalations:
        return conclude(NO_ACTION)

    # 1. Auto-remediation is opt-in per ticket.
    if not ticket.enable_auto_remediation:
        reasons.append("Auto-remediation is not enabled for this ticket, so a person handles it.")
        reasons += _runbook_lines(runbook, hard_limits)
        return conclude(HITL_REQUIRED)

    # 2. The category's policy.
    if active is None:
        reasons.append(f"No enabled policy for category {ticket.category}, so a person decides.")
        reasons += _runbook_lines(runbook, hard_limits)
        return conclude(HITL_REQUIRED)
    reasons.append(
        f"Policy {active.name} (version {active.version}) applies at "
        f"{_autonomy(active.autonomy_level)}."
    )

    # 3. The runbook's risk; past a hard limit it may not run even with approval.
    if runbook is None:
        reasons.append("No runbook: manual handling.")
        return conclude(HITL_REQUIRED)
    reasons += _runbook_lines(runbook, hard_limits)
    # Anything that blocks automation from here on sends the ticket to a person.
    blocked = bool(escalations or hard_limits)

    # 4. Thresholds.
    reasons.append(_reliability_line(reliability))
    lines = _threshold_lines(runbook, model, reliability, active)
    reasons += lines
    blocked = blocked or bool(lines)

    # 5. Safety checks.
    checks.update(_safety_checks(active, stats, now))
    if checks["all_passed"]:
        reasons.append(
            "Safety checks passed: time window, rate limit, backup, system health, blast radius."
        )
    else:
        reasons += _safety_failures(checks, active, stats, now)
        blocked = True

    # 6. Pattern eligibility.
    lines = _pattern_lines(active, stats)
    reasons += lines
    blocked = blocked or bool(lines)

    # 7. Approval.
    reasons += [_sentence(pause) for pause in switches.active_pauses]
    blocked = blocked or bool(switches.active_pauses)
    if critical:
        reasons.append(
            f"Runbook {runbook.name} {_join(critical)}: it is never automatic, "
            "whatever the confidence, reliability or policy."
        )
        return conclude(HITL_REQUIRED)
    if active.autonomy_level not in ACTING_LEVELS:
        reasons.append(
            f"Autonomy {_autonomy(active.autonomy_level)}"
            f"{_ceiling(active, 'autonomy_level')}: a person decides."
        )
        return conclude(HITL_REQUIRED)
    if stats.pattern_level is not None and stats.pattern_level < acting_level:
        acting_level = stats.pattern_level
        if acting_level not in ACTING_LEVELS:
            reasons.append(
                f"The ticket's pattern was lowered to {_autonomy(acting_level)} after failed "
                "fixes or poor feedback: a person decides until it earns autonomy back."
            )
            return conclude(HITL_REQUIRED)
        reasons.append(f"The ticket's pattern acts at {_autonomy(acting_level)} at most.")
    if blocked:
        return conclude(HITL_REQUIRED)
    if model_outcome == HITL_REQUIRED:
        reasons.append("The model asks for a person, and the engine never lowers its verdict.")
        return conclude(HITL_REQUIRED)
    if active.requires_approval:
        threshold = active.auto_approve_threshold
        score = reliability.overall_score
        if threshold is None:
            reasons.append(
                f"Policy {active.name} requires approval and never auto-approves"
                f"{_ceiling(active, 'requires_approval')}."
            )
            return conclude(HITL_REQUIRED)
        if score < threshold:
            reasons.append(
                f"Policy {active.name} requires approval: reliability {score:.1f} is below "
                f"its auto-approve threshold {threshold:.1f}."
            )
            return conclude(HITL_REQUIRED)
        reasons.append(f"Auto-approved: reliability {score:.1f} >= {threshold:.1f}.")
    else:
        reasons.append(f"Policy {active.name} needs no approval: all checks passed.")
    return conclude(AUTO_HEAL)


def _ceiling(policy: PolicySnapshot, name: str) -> str:
    """The words naming the global ceiling that tightened the policy's `name`, or ""."""
    for field_name, note in policy.ceilings:
        if field_name == name:
            return f" (global ceiling {note})"
    return ""


def _model_line(model: ModelOutput, outcome: str) -> str:
    if model.statement:
        return model.statement
    if model.severity not in OUTCOME_BY_SEVERITY:
        return f"The model returned an unknown severity {model.severity}: treated as {outcome}."
    return model_statement(model.severity, model.confidence, model.probabilities, model.explanation)


def _escalations(ticket: TicketFacts, policy: PolicySnapshot | None) -> list[str]:
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


def _risk_level(runbook: RunbookFacts | None) -> str:
    if runbook is None:
        return ""
    return RISK_BY_ACTION_TYPE.get(runbook.action_type, RiskLevel.HIGH.value)


def _critical_traits(runbook: RunbookFacts | None) -> list[str]:
    """Why the runbook always needs people (rule 2); empty when it needs none."""
    if runbook is None:
        return []
    traits = []
    if runbook.action_type == ActionType.CRITICAL_WRITE:
        traits.append("is a critical write")
    elif runbook.action_type not in RISK_BY_ACTION_TYPE:
        traits.append(f"has an unknown action type {runbook.action_type!r}, read as critical")
    if not runbook.reversible:
        traits.append("cannot be undone")
    if runbook.touches:
        names = sorted(TOUCH_NAMES.get(touch, touch) for touch in runbook.touches)
        traits.append(f"is on the forbidden list ({', '.join(names)})")
    return traits


def _hard_limits(runbook: RunbookFacts | None, limits: PolicySnapshot) -> list[str]:
    """Why the runbook may not run at all under `limits`, even with approval."""
    if runbook is None:
        return []
    under = _under(limits)
    lines = runbook_refusals(runbook.name, runbook.commands)  # the floor, under any policy
    lines += runbook.unrunnable
    for command in runbook.commands:
        word = _forbidden_word(command, tuple(limits.forbidden_commands))
        if word:
            lines.append(
                f"Runbook {runbook.name} runs {command!r}, which contains the forbidden "
                f"command {word!r}: it may not run under {under}, even with approval."
            )
    if limits.allowed_systems and runbook.system not in limits.allowed_systems:
        lines.append(
            f"Runbook {runbook.name} acts on {runbook.system!r}, and {under} only allows "
            f"{', '.join(sorted(limits.allowed_systems))}: it may not run, even with approval."
        )
    if limits.requires_rollback_plan and not runbook.has_rollback_plan:
        lines.append(
            f"Runbook {runbook.name} has no rollback plan and {under} requires one: "
            "it may not run, even with approval."
        )
    return lines


def _precondition_failures(
    runbook: RunbookFacts | None, limits: PolicySnapshot, stats: Statistics
) -> list[str]:
    """The seed's pre-execution checks no approval can waive: a required backup, a healthy host."""
    if runbook is None:
        return []
    lines = []
    if limits.requires_backup and not stats.backup_available:
        lines.append(
            f"No backup of the host is available and {_under(limits)} requires one: "
            f"runbook {runbook.name} may not run, even with approval."
        )
    if not stats.system_healthy:
        lines.append(
            f"The host is not healthy enough to act on safely: runbook {runbook.name} "
            "may not run, even with approval."
        )
    return lines


def _runbook_lines(runbook: RunbookFacts | None, hard_limits: list[str]) -> list[str]:
    if runbook is None:
        return ["No runbook: manual handling."]
    risk = _risk_level(runbook)
    return [f"Runbook {runbook.name} is {runbook.action_type}: {risk} risk.", *hard_limits]


@lru_cache(maxsize=256)
def _forbidden_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    # A whole-word match, case-insensitive: "delete" catches "find -delete", not "undeleted".
    cleaned = sorted({word.strip().lower() for word in words if word.strip()}, key=len)
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(word) for word in reversed(cleaned))
    return re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE)


def _forbidden_word(command: str, words: tuple[str, ...]) -> str | None:
    pattern = _forbidden_pattern(words)
    found = pattern.search(command) if pattern else None
    return found.group(1).lower() if found else None


def _reliability_line(reliability: ReliabilityBreakdown) -> str:
    r = reliability
    return (
        f"Reliability {r.overall_score:.1f} ({r.confidence_level.replace('_', ' ')}): "
        f"AI confidence {r.ai_confidence:.1f}, human feedback {r.human_feedback:.1f}, "
        f"success history {r.success_history:.1f}, pattern match {r.pattern_match:.1f}."
    )


def _threshold_lines(
    runbook: RunbookFacts,
    model: ModelOutput,
    reliability: ReliabilityBreakdown,
    policy: PolicySnapshot,
) -> list[str]:
    """Step 4: each threshold the ticket misses, including PHASE-65's confidence floor."""
    lines = []
    if runbook.action_type not in policy.allowed_action_types:
        runs = ", ".join(sorted(policy.allowed_action_types)) or "none"
        lines.append(
            f"Policy {policy.name} does not run {runbook.action_type} actions automatically "
            f"(it runs: {runs})."
        )
    confidence = model.confidence if math.isfinite(model.confidence) else 0.0
    # What is compared is the probability of the class the model picked.
    probability = f"probability for {class_name(model.severity)}, {confidence:.2f},"
    if confidence < policy.min_confidence_score:
        lines.append(
            f"The model's {probability} is below the policy minimum "
            f"{policy.min_confidence_score:.2f}."
        )
    if reliability.overall_score < policy.min_reliability_score:
        lines.append(
            f"Reliability {reliability.overall_score:.1f} is below the policy minimum "
            f"{policy.min_reliability_score:.1f}{_ceiling(policy, 'min_reliability_score')}."
        )
    if confidence < policy.min_auto_confidence_escalation:
        lines.append(
            f"Escalation: the model's {probability} is below "
            f"{policy.min_auto_confidence_escalation:.2f}, so a person decides."
        )
    return lines


def _safety_checks(policy: PolicySnapshot, stats: Statistics, now: datetime) -> dict[str, bool]:
    """Step 5: each pre-execution check by name, plus all_passed."""
    checks = {
        "time_window_ok": _in_time_window(policy, now),
        "rate_limit_ok": stats.actions_last_hour < policy.max_actions_per_hour,
        "backup_available": stats.backup_available or not policy.requires_backup,
        "system_healthy": stats.system_healthy,
        "blast_radius_ok": _blast_radius_ok(policy, stats),
    }
    checks["all_passed"] = all(checks.values())
    return checks


def _safety_failures(
    checks: Mapping[str, bool], policy: PolicySnapshot, stats: Statistics, now: datetime
) -> list[str]:
    """One line per failed safety check."""
    lines = []
    if not checks["time_window_ok"]:
        lines.append(_time_window_line(policy, now))
    if not checks["rate_limit_ok"]:
        lines.append(_rate_limit_line(policy, stats))
    # A missing backup or an unhealthy host is a hard limit, reported at step 3.
    if not checks["blast_radius_ok"]:
        lines.append(_blast_radius_line(policy, stats))
    return lines


def _rate_limit_line(policy: PolicySnapshot, stats: Statistics) -> str:
    return (
        f"Rate limit reached: {stats.actions_last_hour} actions in the last hour, "
        f"policy {policy.name} allows {policy.max_actions_per_hour} an hour"
        f"{_ceiling(policy, 'max_actions_per_hour')}."
    )


def _local_time(policy: PolicySnapshot, now: datetime) -> datetime | None:
    try:
        return now.astimezone(ZoneInfo(policy.timezone))
    except (KeyError, ValueError, OSError):  # unknown or malformed zone name
        return None


def _in_time_window(policy: PolicySnapshot, now: datetime) -> bool:
    """Whether `now` is inside the policy's allowed days and hours, in its time zone.

    Hours run from start (inclusive) to end (exclusive); a window whose end is
    before its start crosses midnight, and its day is the day it started
    (Friday 22 -> 6 covers Saturday 05:59). start == end is the whole day.
    """
    local = _local_time(policy, now)
    if local is None:
        return False  # a zone we cannot read has no window we can be inside
    start, end = policy.allowed_hours_start, policy.allowed_hours_end
    day = local.weekday()
    if start is not None or end is not None:
        start = 0 if start is None else start
        end = 24 if end is None else end
        if start < end:
            if not start <= local.hour < end:
                return False
        elif start > end:
            if local.hour < end:
                day = (day - 1) % 7  # in the part of the window after midnight
            elif local.hour < start:
                return False
    days = {name.lower() for name in policy.allowed_days}
    return not days or WEEKDAYS[day] in days


def _time_window_line(policy: PolicySnapshot, now: datetime) -> str:
    local = _local_time(policy, now)
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


def _hosts_after(stats: Statistics) -> int:
    """Hosts under remediation in scope once this action starts."""
    return stats.hosts_under_remediation + (0 if stats.host_under_remediation else 1)


def _blast_radius_ok(policy: PolicySnapshot, stats: Statistics) -> bool:
    if not stats.host_in_scope:
        return True  # the limit counts hosts with the label; this one is outside it
    after = _hosts_after(stats)
    if policy.blast_radius_max_hosts is not None and after > policy.blast_radius_max_hosts:
        return False
    percent = policy.blast_radius_max_percent
    if percent is not None:
        # Integer arithmetic on the left keeps 20% of 5 hosts at exactly one host. A
        # percentage never rounds below one host: on a small fleet "20%" would otherwise
        # mean "never act"; blast_radius_max_hosts=0 is the way to say that.
        within = after * 100 <= percent * stats.hosts_in_scope
        if not within and not (percent > 0 and after <= 1):
            return False
    return True


def _blast_radius_line(policy: PolicySnapshot, stats: Statistics) -> str:
    scope = f"hosts labelled {policy.blast_radius_label}" if policy.blast_radius_label else "hosts"
    limits = []
    if policy.blast_radius_max_hosts is not None:
        limits.append(f"{policy.blast_radius_max_hosts} hosts")
    if policy.blast_radius_max_percent is not None:
        limits.append(f"{policy.blast_radius_max_percent:g}% of them")
    return (
        f"Blast radius: this would put {_hosts_after(stats)} of {stats.hosts_in_scope} {scope} "
        f"under remediation at once; policy {policy.name} allows at most {' and '.join(limits)}."
    )


def _pattern_lines(policy: PolicySnapshot, stats: Statistics) -> list[str]:
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
    if pattern is not None and not pattern.eligible and policy.min_similar_tickets > 0:
        lines.append(
            f"The ticket matches a known pattern ({pattern.occurrence_count} occurrences, "
            f"{pattern.positive_feedback_rate:.0%} positive) not yet eligible for "
            f"auto-remediation{_ceiling(policy, 'pattern_eligibility')}."
        )
    return lines


def _required_approvals(limits: PolicySnapshot, critical: list[str]) -> int:
    # A critical action never needs fewer approvals than a safe one under the same policy.
    if critical:
        return max(limits.critical_required_approvals, limits.required_approvals, 1)
    return max(limits.required_approvals, 1)


def _conclusion(
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
    raised = f"; raised from the model's {model_label}" if outcome != model_outcome else ""
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
    return f"Decision: {label} ({outcome}{raised}): {what}{recorded}."


def _autonomy(level: int) -> str:
    return AUTONOMY.get(level, f"L{level} (not allowed)")


def _under(limits: PolicySnapshot) -> str:
    if limits is NO_POLICY_LIMITS:
        return "the default limits (no enabled policy)"
    return f"policy {limits.name}"


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}."


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


@dataclass(frozen=True)
class DispatchFacts:
    """What an execution about to start depends on, read in the claim's transaction."""

    category: str
    automatic: bool  # queued by an AUTO_HEAL decision (else by people's approval)
    decided_under_policy: bool  # its decision was made under an enabled, enforcing policy
    decided_checks: Mapping[str, bool]  # the decision's safety checks, as people saw them
    decided_runbook_version: int | None
    runbook_version: int | None  # the runbook's version now
    runbook_text_changed: bool  # its action or commands differ from what was decided
    runbook_enabled: bool
    host_enabled: bool
    approval_status: str | None  # None: no approval request (automatic)
    approval_expired: bool
    readings_show_problem: bool  # the host's newest reading still shows the decided problem
    pattern_level: int | None = None  # Statistics.pattern_level, read now


def dispatch_refusals(
    facts: DispatchFacts,
    policy: PolicySnapshot | None,
    runbook: RunbookFacts,
    stats: Statistics,
    now: datetime,
) -> list[str]:
    """Why an execution may not start at `now`, one line each; empty when it may.

    Pauses are asked by the caller first: a pause holds an execution, these cancel it,
    and dispatch_waits() holds it for what time can pass.
    The same rules as decide(), asked again where the action starts: everything
    that could have changed since the decision (the policy, the runbook,
    the approval, the clock, the fleet, the host's readings). A safety check that
    had already failed when people approved is their call; one that passed then
    and fails now stops the execution.
    """
    lines = []
    if facts.approval_status is not None:
        if facts.approval_status != "approved":
            lines.append(f"The approval request is {facts.approval_status}, not approved.")
        elif facts.approval_expired:
            lines.append("The approval has expired: it was given for a time that has passed.")
    if not facts.runbook_enabled:
        lines.append(f"Runbook {runbook.name} is disabled.")
    if facts.decided_runbook_version != facts.runbook_version or facts.runbook_text_changed:
        lines.append(
            f"Runbook {runbook.name} changed since the decision (version "
            f"{facts.decided_runbook_version} decided, {facts.runbook_version} now)."
        )
    if not facts.host_enabled:
        lines.append("The host is disabled.")
    if not facts.readings_show_problem:
        lines.append("The host's newest readings no longer show the problem.")
    active = policy if policy is not None and policy.enabled else None
    if facts.decided_under_policy or facts.automatic:
        if active is None:
            lines.append(f"No enabled policy covers {facts.category} any more.")
        elif active.mode == PolicyMode.SHADOW:
            lines.append(f"Policy {active.name} is now in shadow mode.")
    # A demotion since the decision takes effect before the next automatic action starts.
    if facts.automatic and active is not None:
        if active.autonomy_level not in ACTING_LEVELS:
            lines.append(
                f"Policy {active.name} is now at {_autonomy(active.autonomy_level)}"
                f"{_ceiling(active, 'autonomy_level')}: a person must approve this action."
            )
        elif _ceiling(active, "requires_approval"):
            lines.append(
                f"Policy {active.name} now needs a person's approval for every action"
                f"{_ceiling(active, 'requires_approval')}."
            )
        elif facts.pattern_level is not None and facts.pattern_level not in ACTING_LEVELS:
            lines.append(
                f"The ticket's pattern is now at {_autonomy(facts.pattern_level)}: "
                "a person must approve this action."
            )
    limits = active or NO_POLICY_LIMITS
    lines += _hard_limits(runbook, limits) + _precondition_failures(runbook, limits, stats)
    return lines


def dispatch_waits(
    facts: DispatchFacts, policy: PolicySnapshot | None, stats: Statistics, now: datetime
) -> list[str]:
    """Why an execution that may start must wait, one line each; empty when it need not.

    The checks that time can pass (the time window, the blast radius, the rate limit)
    hold an execution rather than cancel it: approved work is not thrown away because
    an unrelated fix holds the blast radius for a minute. As with the refusals, a check
    that had already failed when people approved is their call. `stats.actions_last_hour`
    counts the other actions, not this one.
    """
    if policy is None or not policy.enabled:
        return []
    checks = _safety_checks(policy, stats, now)
    lines = []
    if not checks["time_window_ok"] and facts.decided_checks.get("time_window_ok", True):
        lines.append(_time_window_line(policy, now))
    if not checks["blast_radius_ok"] and facts.decided_checks.get("blast_radius_ok", True):
        lines.append(_blast_radius_line(policy, stats))
    if not checks["rate_limit_ok"] and facts.decided_checks.get("rate_limit_ok", True):
        lines.append(_rate_limit_line(policy, stats))
    return lines
