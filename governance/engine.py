"""The decision engine: one pure function from facts to a Decision.

No ORM, no clock: governance/decisions.py reads the database into these frozen
dataclasses, calls decide(), and writes the result back.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from scoring.reliability import (
    FeedbackFact,
    PatternFacts,
    ReliabilityBreakdown,
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
    confidence: float  # 0-1
    explanation: tuple[tuple[str, float], ...] = ()  # (feature, contribution), strongest first


@dataclass(frozen=True)
class RunbookFacts:
    name: str
    action_type: str  # remediation.choices.ActionType value
    system: str  # the kind of system it acts on ("linux", "network", "dns", ...)
    reversible: bool
    has_rollback_plan: bool
    commands: tuple[str, ...]  # what it runs, checked against forbidden_commands
    touches: frozenset[str] = frozenset()  # remediation.choices.ForbiddenTouch values


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
    host_under_remediation: bool = False  # this host already has an active execution
    backup_available: bool = True
    system_healthy: bool = True  # host reporting and not in a worse state than the ticket says
    similar_resolved_tickets: int = 0
    positive_feedback_rate: float | None = None  # category's, 0-1; None: no feedback yet
    feedback: tuple[FeedbackFact, ...] = ()
    category_resolved: int = 0
    category_total: int = 0
    pattern: PatternFacts | None = None


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


def decide(
    ticket: TicketFacts,
    model: ModelOutput,
    policy: PolicySnapshot | None,
    runbook: RunbookFacts | None,
    switches: Switches,
    stats: Statistics,
    now: datetime,
) -> Decision:
    raise NotImplementedError  # filled in by issue 4's work
