"""What people read instead of codes: severities and outcomes, risk, audit event types,
safety checks, and the model's statement with its class probabilities.

Plain functions over values (no ORM): the engine's reason lines, the admin, the evidence
page and the console all say the same words.
"""

import re
from collections.abc import Mapping, Sequence

from governance.choices import RiskLevel
from remediation.choices import ActionType
from scoring.choices import Severity
from scoring.features import FEATURE_NAMES

SEVERITY_LABELS = {
    Severity.NO_ACTION.value: "No action",
    Severity.AUTO_HEAL.value: "Auto-heal",
    Severity.HITL_REQUIRED.value: "Needs a person",
}
# The engine's outcomes are the severity classes' names (NO_ACTION, AUTO_HEAL, HITL_REQUIRED).
OUTCOME_BY_SEVERITY = {value: Severity(value).name for value in SEVERITY_LABELS}
SEVERITY_BY_OUTCOME = {code: value for value, code in OUTCOME_BY_SEVERITY.items()}
OUTCOME_LABELS = {OUTCOME_BY_SEVERITY[value]: label for value, label in SEVERITY_LABELS.items()}

# A runbook's action type as a reason line says it ("is a safe write").
ACTION_TYPE_LABELS = {
    ActionType.READ_ONLY.value: "read only",
    ActionType.SAFE_WRITE.value: "safe write",
    ActionType.CRITICAL_WRITE.value: "critical write",
}

# The model's features (metrics and their change since the host's previous reading).
FEATURE_LABELS = {
    "disk_usage": "disk usage",
    "memory_usage": "memory usage",
    "cpu_usage": "CPU usage",
    "dns_latency_ms": "DNS latency",
    "firewall_change_requested": "firewall change requested",
    "disk_usage_delta": "change in disk usage",
    "memory_usage_delta": "change in memory usage",
    "cpu_usage_delta": "change in CPU usage",
    "dns_latency_ms_delta": "change in DNS latency",
}
assert set(FEATURE_LABELS) == set(FEATURE_NAMES), "every feature needs its label"

EVENT_LABELS = {
    "ticket.opened": "Ticket opened",
    "ticket.changed": "Ticket edited",
    "ticket.escalated": "Escalated to people",
    "ticket.partially_remediated": "Fix did not hold: partially remediated",
    "ticket.triaged": "Ticket's text triaged",
    "ticket.host_named": "Host named by a person",
    "ticket.resolved": "Ticket resolved",
    "ticket.closed": "Ticket closed unresolved",
    "alert.counted": "Alert counted on the ticket",
    "alert.refired": "Alert fired again",
    "alert.resolved": "Alert resolved",
    "decision.made": "Decision made",
    "approval.requested": "Approval requested",
    "approval.approved": "Approved",
    "approval.rejected": "Rejected",
    "approval.expired": "Approval expired",
    "approval.voided": "Approval voided",
    "execution.queued": "Execution queued",
    "execution.held": "Execution held by a pause",
    "execution.released": "Execution released (its pause ended or its checks pass)",
    "execution.waiting": "Held until its checks pass",
    "execution.report_refused": "Report refused: not the command decided",
    "host.allowlist_reported": "Agent's allow-list reported",
    "execution.dispatched": "Sent to the agent",
    "execution.claimed": "Taken by the agent",
    "execution.offered_again": "Offered to the agent again (it never said it started)",
    "execution.started": "Started on the agent",
    "execution.handed_off": "Handed to an automation system",
    "execution.handoff_uncertain": "Hand-off unanswered",
    "execution.running": "Running on the agent",
    "execution.verifying": "Verifying with fresh metrics",
    "execution.succeeded": "Execution succeeded",
    "execution.failed": "Execution failed",
    "execution.cancelled": "Execution cancelled",
    "execution.late_report": "Late report from the agent",
    "execution.rollback_pending": "Rollback requested",
    "execution.rollback_claimed": "Rollback taken by the agent",
    "execution.rollback_started": "Rollback started",
    "execution.rolling_back": "Rolling back",
    "execution.rolled_back": "Rolled back",
    "execution.rollback_failed": "Rollback failed",
    "automation.paused": "Automation paused",
    "automation.resumed": "Automation resumed",
    "automation.pause_lapsed": "Pause ran out",
    "host.added": "Host added",
    "host.created": "Host added",
    "host.changed": "Host edited",
    "host.key_rotated": "Agent key rotated",
    "policy.created": "Policy created",
    "policy.changed": "Policy edited",
    "policy.enforced": "Policy switched from shadow to enforce",
    "policy.promoted": "Policy given more autonomy",
    "policy.demoted": "Policy lowered to L1",
    "pattern.promoted": "Pattern given more autonomy",
    "pattern.demoted": "Pattern lowered to L1",
    "autonomy.proposed": "More autonomy proposed",
    "autonomy.accepted": "Autonomy proposal accepted",
    "autonomy.dismissed": "Autonomy proposal dismissed",
    "autonomy.superseded": "Autonomy proposal superseded",
    "automationtarget.created": "Automation system added",
    "automationtarget.changed": "Automation system edited",
    "runbook.created": "Runbook created",
    "runbook.changed": "Runbook edited",
    "feedback.given": "Feedback given",
    "feedback.replaced": "Feedback replaced by the same person's later verdict",
    "feedback.changed": "Feedback edited",
    "model.registered": "Model version registered",
    "model.approved": "Model version approved",
    "model.retired": "Model version retired",
    "triage_model.registered": "Triage model version registered",
    "triage_model.approved": "Triage model version approved",
    "triage_model.retired": "Triage model version retired",
    "triage_model.comparison_requested": "Triage model comparison requested",
    "triage_model.compared": "Triage model compared with the serving version",
    "user.created": "Person added",
    "user.access_changed": "Access changed",
    "group.created": "Role created",
    "user.deleted": "Person deleted",
    "group.permissions_changed": "Role permissions changed",
    "group.renamed": "Role renamed",
    "group.deleted": "Role deleted",
    "schedule.created": "Task schedule added",
    "schedule.changed": "Task schedule edited",
    "schedule.deleted": "Task schedule deleted",
    "retention.dropped": "Readings past their keeping period dropped",
    "retention.pruned": "Readings past their keeping period deleted",
    "ticket.overridden": "Decided differently by a supervisor",
}

# checks.safety_checks' names, as a supervisor reads them when they pass.
CHECK_LABELS = {
    "time_window_ok": "Inside the policy's time window",
    "rate_limit_ok": "Under the rate limit",
    "backup_available": "Backup available (or not required)",
    "system_healthy": "Host healthy and reporting",
    "blast_radius_ok": "Within the blast radius",
}


def with_code(label: str, code: object) -> str:
    """'Needs a person [HITL_REQUIRED]': the words to read, the code to search for."""
    return f"{label} [{code}]"


def action_type_label(action_type: str) -> str:
    """'safe write' for "safe_write"; an unknown type is shown as itself."""
    return ACTION_TYPE_LABELS.get(action_type, action_type or "-")


def feature_label(feature: str) -> str:
    """'disk usage' for "disk_usage"; an unknown feature is shown as itself."""
    return FEATURE_LABELS.get(feature, feature)


def percent(share: float) -> str:
    """A probability or share on the one scale people read: 0.983 -> '98%'."""
    return f"{share:.0%}"


def pull(weight: float) -> str:
    """How strongly a feature pulled the model towards its class, in words."""
    size = abs(weight)
    strength = "strongly" if size >= 0.5 else "moderately" if size >= 0.2 else "slightly"
    return f"{strength} {'towards' if weight >= 0 else 'away from'}"


def driver_list(explanation: Sequence[Sequence], severity: int | None, limit: int = 3) -> str:
    """The model's drivers as words: 'disk usage [disk_usage], strongly towards auto-heal
    (+98 points)'. Each weight is how much the class's probability drops when that metric
    is put back to healthy."""
    target = class_name(severity) if severity is not None else "its class"
    return "; ".join(
        f"{with_code(feature_label(str(name)), name)}, {pull(float(weight))} {target} "
        f"({float(weight) * 100:+.0f} points)"
        for name, weight, *_ in explanation[:limit]
    )


def severity_label(severity: int | None) -> str:
    """'Needs a person' for 2; an unknown number is shown as itself."""
    return SEVERITY_LABELS.get(severity, str(severity)) if severity is not None else "-"


def outcome_label(outcome: str) -> str:
    """'Needs a person' for HITL_REQUIRED; an unknown code is shown as itself."""
    return OUTCOME_LABELS.get(outcome, outcome or "-")


def risk_label(risk_level: str) -> str:
    """'High' for "high"; no runbook, no risk: '-'."""
    return RiskLevel(risk_level).label if risk_level in RiskLevel.values else risk_level or "-"


def event_label(action: str) -> str:
    """'Approval requested' for "approval.requested"; a code not listed reads as words
    ("runbook.retired" -> 'Runbook retired'), so a new event type is never shown raw."""
    if action in EVENT_LABELS:
        return EVENT_LABELS[action]
    words = action.replace(".", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def object_type_label(object_type: str) -> str:
    """'Approval request' for "ApprovalRequest": an audited object's model as words."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", object_type or "-").lower()
    return words[:1].upper() + words[1:]


def check_list(checks: Mapping[str, bool]) -> list[tuple[str, bool]]:
    """A decision's safety checks as (label, passed), in the engine's order; the
    "all_passed" summary is left out (the list says it)."""
    return [
        (CHECK_LABELS.get(name, name.replace("_", " ")), bool(passed))
        for name, passed in checks.items()
        if name != "all_passed"
    ]


def class_name(severity: int) -> str:
    """The class as a reason line names it: 'needs a person' for 2."""
    return SEVERITY_LABELS[severity].lower() if severity in SEVERITY_LABELS else f"class {severity}"


def probability_list(probabilities: Sequence[float]) -> str:
    """'no action 2%, auto-heal 95%, needs a person 3%' (severity order)."""
    return ", ".join(f"{class_name(i)} {percent(p)}" for i, p in enumerate(probabilities))


def class_with_probability(severity: int | None, probability: float | None) -> str:
    """A class the model picked, with the probability it gave that class: 'Auto-heal, 98%
    probable'. The model picks the class of least expected cost, so a cautious class may be
    picked at a low probability: the words then say so instead of reading as a confidence."""
    label = severity_label(severity)
    if probability is None:
        return label
    if probability < 0.5:
        return f"{label}, only {percent(probability)} probable: picked as the cautious class"
    return f"{label}, {percent(probability)} probable"


def model_statement(
    severity: int,
    confidence: float,
    probabilities: Sequence[float] = (),
    explanation: Sequence[Sequence] = (),
) -> str:
    """What the model said, as a reason line: the class it picks, the rule that picked it
    (least expected cost, so it may be less probable than a class it beat), every class's
    probability, and the metrics that drove it.

    Without `probabilities` (decisions stored before they were recorded) only the picked
    class's own probability is known, and the line says so rather than call it a confidence.
    """
    if severity not in SEVERITY_LABELS:
        return f"The model returned an unknown severity {severity}."
    code = with_code(class_name(severity), OUTCOME_BY_SEVERITY[severity])
    drivers = " and ".join(feature_label(str(pair[0])) for pair in explanation[:2])
    because = f", mostly from {drivers}" if drivers else ""
    if len(probabilities) != len(SEVERITY_LABELS):
        return (
            f"The model picks {code} (probability {percent(confidence)} for that class; "
            f"the other classes' were not recorded){because}."
        )
    likeliest = probabilities[severity] >= max(probabilities)
    rule = (
        "the most probable class and the class of least expected cost"
        if likeliest
        else "the class of least expected cost"
    )
    return (
        f"The model picks {code}, {rule} (probabilities: {probability_list(probabilities)})"
        f"{because}."
    )
