"""The facts the decision engine reads and the Decision it returns: frozen values, no ORM.

governance/decisions/ reads the database into these dataclasses; governance/rules/engine.py
decides from them alone, and governance/rules/dispatch.py asks the same rules again where
an action starts. What the outcomes mean:

- NO_ACTION: nothing runs; the decision is recorded (allowed is False).
- AUTO_HEAL: the runbook runs without a person (unless the policy is in shadow mode).
- HITL_REQUIRED: a person decides. With allowed=True the runbook waits for
  required_approvals approvals; with allowed=False no runbook may run and a
  person handles the ticket by hand (requires_approval is then False, as there
  is nothing to approve).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from governance.choices import AutonomyLevel
from scoring.reliability import SEED_FORMULA, FeedbackFact, PatternFacts, ReliabilityBreakdown

NO_ACTION = "NO_ACTION"
AUTO_HEAL = "AUTO_HEAL"
HITL_REQUIRED = "HITL_REQUIRED"
OUTCOMES = (NO_ACTION, AUTO_HEAL, HITL_REQUIRED)
# The model's class number for each outcome (scoring.choices.Severity).
OUTCOME_BY_SEVERITY = {0: NO_ACTION, 1: AUTO_HEAL, 2: HITL_REQUIRED}
# Outcomes from least to most cautious: the engine may only move a decision right (rule 1).
CAUTION = {NO_ACTION: 0, AUTO_HEAL: 1, HITL_REQUIRED: 2}


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
    # The level the ticket's pattern was lowered to (governance.promotions.demotions), a cap on the
    # policy's level until it earns its way back; None: the pattern follows its policy.
    pattern_level: int | None = None
    # How the human feedback factor is computed (scoring.reliability.FEEDBACK_FORMULAS):
    # the setting WARDEN_FEEDBACK_FORMULA, read by whoever gathers the statistics.
    feedback_formula: str = SEED_FORMULA


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


# The limits a runbook meets when no enabled policy covers its category: the
# PolicySnapshot defaults at L0. A person may still approve a catalogued runbook,
# never one that runs a forbidden command or has no rollback plan.
NO_POLICY_LIMITS = PolicySnapshot(
    name="default limits",
    category="",
    version=0,
    autonomy_level=AutonomyLevel.L0_MANUAL.value,
)
