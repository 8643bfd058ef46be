"""The decision engine: one pure function from facts to a Decision.

No ORM, no clock: governance/decisions/ reads the database into the frozen dataclasses
of governance/rules/facts.py, calls decide(), and writes the result back. The checks it
asks live in governance/rules/checks.py, the reason lines it writes in
governance/rules/reasons.py.

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
"""

from dataclasses import dataclass, field
from datetime import datetime

from governance.choices import PolicyMode
from governance.rules.checks import (
    ACTING_LEVELS,
    critical_traits,
    hard_limits,
    precondition_failures,
    required_approvals,
    risk_level,
    safety_checks,
)
from governance.rules.facts import (
    AUTO_HEAL,
    CAUTION,
    HITL_REQUIRED,
    NO_ACTION,
    NO_POLICY_LIMITS,
    OUTCOME_BY_SEVERITY,
    Decision,
    ModelOutput,
    PolicySnapshot,
    RunbookFacts,
    Statistics,
    Switches,
    TicketFacts,
)
from governance.rules.reasons import (
    as_sentence,
    autonomy_name,
    ceiling_note,
    conclusion_line,
    escalation_lines,
    joined,
    model_line,
    pattern_lines,
    reliability_line,
    runbook_lines,
    safety_failure_lines,
    threshold_lines,
)
from scoring.reliability import ReliabilityBreakdown, ReliabilityInputs, reliability_score


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
    case = _open_case(ticket, model, policy, runbook, switches, stats, now)
    return _conclude(case, _engine_outcome(case))


@dataclass
class _Case:
    """One decision on its way through the steps: the facts, what was derived from them
    before the first step, and what the steps add (reasons, safety checks, acting level)."""

    ticket: TicketFacts
    model: ModelOutput
    runbook: RunbookFacts | None
    switches: Switches
    stats: Statistics
    now: datetime
    model_outcome: str
    reliability: ReliabilityBreakdown
    active: PolicySnapshot | None  # the policy, when it is enabled
    limits: PolicySnapshot  # the active policy, or the default limits
    shadow: bool
    critical: list[str]  # why the runbook always needs people
    hard_limits: list[str]  # why the runbook may not run at all, even with approval
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # filled at step 5
    acting_level: int = 0  # the policy's level, lowered at step 7 by a demoted pattern

    @property
    def allowed(self) -> bool:
        return self.runbook is not None and not self.hard_limits


def _open_case(
    ticket: TicketFacts,
    model: ModelOutput,
    policy: PolicySnapshot | None,
    runbook: RunbookFacts | None,
    switches: Switches,
    stats: Statistics,
    now: datetime,
) -> _Case:
    """What every step reads: the model's outcome, the reliability score, the policy that
    applies (or the default limits), and the runbook's critical traits and hard limits."""
    reliability = reliability_score(
        ReliabilityInputs(
            ai_confidence=model.confidence,
            feedback=stats.feedback,
            category_resolved=stats.category_resolved,
            category_total=stats.category_total,
            pattern=stats.pattern,
            feedback_formula=stats.feedback_formula,
        )
    )
    active = policy if policy is not None and policy.enabled else None
    limits = active or NO_POLICY_LIMITS
    return _Case(
        ticket=ticket,
        model=model,
        runbook=runbook,
        switches=switches,
        stats=stats,
        now=now,
        model_outcome=OUTCOME_BY_SEVERITY.get(model.severity, HITL_REQUIRED),
        reliability=reliability,
        active=active,
        limits=limits,
        shadow=active is not None and active.mode == PolicyMode.SHADOW,
        critical=critical_traits(runbook),
        hard_limits=hard_limits(runbook, limits) + precondition_failures(runbook, limits, stats),
        acting_level=limits.autonomy_level,
    )


def _engine_outcome(case: _Case) -> str:
    """Steps 0-7: the engine's own outcome, each step appending its reasons."""
    # 0. The model's verdict, and the escalation rules that hold whatever it says.
    case.reasons.append(model_line(case.model, case.model_outcome))
    escalations = escalation_lines(case.ticket, case.active)
    case.reasons += escalations
    if case.model_outcome == NO_ACTION and not escalations:
        return NO_ACTION
    scope = _scope_step(case)
    if scope is None:
        return HITL_REQUIRED
    policy, runbook = scope
    # Anything that blocks automation from here on sends the ticket to a person. Every
    # step runs, so the reasons name every block, not only the first.
    blocks = [
        _threshold_step(case, policy, runbook),
        _safety_step(case, policy),
        _pattern_step(case, policy),
        _pause_step(case),
    ]
    blocked = bool(escalations or case.hard_limits) or any(blocks)
    return _approval_step(case, policy, runbook, blocked)


def _scope_step(case: _Case) -> tuple[PolicySnapshot, RunbookFacts] | None:
    """Steps 1-3: the enabled policy and the runbook automation would act under, or None
    when the ticket, its policy or its runbook leave automation out (a person handles it)."""
    # 1. Auto-remediation is opt-in per ticket.
    if not case.ticket.enable_auto_remediation:
        case.reasons.append(
            "Auto-remediation is not enabled for this ticket, so a person handles it."
        )
        case.reasons += runbook_lines(case.runbook, case.hard_limits)
        return None
    # 2. The category's policy.
    policy = case.active
    if policy is None:
        case.reasons.append(
            f"No enabled policy for category {case.ticket.category}, so a person decides."
        )
        case.reasons += runbook_lines(case.runbook, case.hard_limits)
        return None
    case.reasons.append(
        f"Policy {policy.name} (version {policy.version}) applies at "
        f"{autonomy_name(policy.autonomy_level)}."
    )
    # 3. The runbook's risk; past a hard limit it may not run even with approval.
    if case.runbook is None:
        case.reasons.append("No runbook: manual handling.")
        return None
    case.reasons += runbook_lines(case.runbook, case.hard_limits)
    return policy, case.runbook


def _threshold_step(case: _Case, policy: PolicySnapshot, runbook: RunbookFacts) -> bool:
    """Step 4: the thresholds; True when one is missed."""
    case.reasons.append(reliability_line(case.reliability))
    lines = threshold_lines(runbook, case.model, case.reliability, policy)
    case.reasons += lines
    return bool(lines)


def _safety_step(case: _Case, policy: PolicySnapshot) -> bool:
    """Step 5: the safety checks; True when one fails."""
    case.checks.update(safety_checks(policy, case.stats, case.now))
    if case.checks["all_passed"]:
        case.reasons.append(
            "Safety checks passed: time window, rate limit, backup, system health, blast radius."
        )
        return False
    case.reasons += safety_failure_lines(case.checks, policy, case.stats, case.now)
    return True


def _pattern_step(case: _Case, policy: PolicySnapshot) -> bool:
    """Step 6: pattern eligibility; True when the ticket's history falls short."""
    lines = pattern_lines(policy, case.stats)
    case.reasons += lines
    return bool(lines)


def _pause_step(case: _Case) -> bool:
    """Step 7 begins with the pauses; True when one applies."""
    pauses = case.switches.active_pauses
    case.reasons += [as_sentence(pause) for pause in pauses]
    return bool(pauses)


def _approval_step(
    case: _Case, policy: PolicySnapshot, runbook: RunbookFacts, blocked: bool
) -> str:
    """Step 7: whether a person must approve (HITL_REQUIRED) or the engine acts (AUTO_HEAL)."""
    if case.critical:
        case.reasons.append(
            f"Runbook {runbook.name} {joined(case.critical)}: it is never automatic, "
            "whatever the confidence, reliability or policy."
        )
        return HITL_REQUIRED
    if policy.autonomy_level not in ACTING_LEVELS:
        case.reasons.append(
            f"Autonomy {autonomy_name(policy.autonomy_level)}"
            f"{ceiling_note(policy, 'autonomy_level')}: a person decides."
        )
        return HITL_REQUIRED
    pattern_level = case.stats.pattern_level
    if pattern_level is not None and pattern_level < case.acting_level:
        case.acting_level = pattern_level
        if pattern_level not in ACTING_LEVELS:
            case.reasons.append(
                f"The ticket's pattern was lowered to {autonomy_name(pattern_level)} after "
                "failed fixes or poor feedback: a person decides until it earns autonomy back."
            )
            return HITL_REQUIRED
        case.reasons.append(f"The ticket's pattern acts at {autonomy_name(pattern_level)} at most.")
    if blocked:
        return HITL_REQUIRED
    if case.model_outcome == HITL_REQUIRED:
        case.reasons.append("The model asks for a person, and the engine never lowers its verdict.")
        return HITL_REQUIRED
    return _policy_approval(case, policy)


def _policy_approval(case: _Case, policy: PolicySnapshot) -> str:
    """The end of step 7: the policy's approval rule, for a ticket nothing else held."""
    if not policy.requires_approval:
        case.reasons.append(f"Policy {policy.name} needs no approval: all checks passed.")
        return AUTO_HEAL
    threshold = policy.auto_approve_threshold
    score = case.reliability.overall_score
    if threshold is None:
        case.reasons.append(
            f"Policy {policy.name} requires approval and never auto-approves"
            f"{ceiling_note(policy, 'requires_approval')}."
        )
        return HITL_REQUIRED
    if score < threshold:
        case.reasons.append(
            f"Policy {policy.name} requires approval: reliability {score:.1f} is below "
            f"its auto-approve threshold {threshold:.1f}."
        )
        return HITL_REQUIRED
    case.reasons.append(f"Auto-approved: reliability {score:.1f} >= {threshold:.1f}.")
    return AUTO_HEAL


def _conclude(case: _Case, engine_outcome: str) -> Decision:
    """Step 8: the outcome never below the model's, the conclusion line, the Decision."""
    outcome = max(case.model_outcome, engine_outcome, key=CAUTION.__getitem__)
    may_run = case.allowed and outcome != NO_ACTION
    requires_approval = may_run and outcome == HITL_REQUIRED
    approvals = required_approvals(case.limits, case.critical) if requires_approval else 0
    if case.shadow:
        case.reasons.append(
            f"Policy {case.limits.name} is in shadow mode: this decision is recorded "
            "and nothing is executed."
        )
    case.reasons.append(
        conclusion_line(
            outcome,
            case.model_outcome,
            may_run,
            approvals,
            case.runbook,
            case.ticket,
            case.acting_level,
            case.shadow,
        )
    )
    active = case.active
    return Decision(
        outcome=outcome,
        model_outcome=case.model_outcome,
        allowed=may_run,
        requires_approval=requires_approval,
        required_approvals=approvals,
        action_type=case.runbook.action_type if case.runbook else "",
        risk_level=risk_level(case.runbook),
        shadow=case.shadow,
        reasons=tuple(case.reasons),
        safety_checks=case.checks,
        reliability=case.reliability,
        policy_name=active.name if active else "",
        policy_version=active.version if active else None,
    )
