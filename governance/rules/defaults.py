"""The policies a fresh install starts with, one per category.

Each entry maps PolicySnapshot's field names (all but `version`) to a value,
plus a short `description`. A fresh install heals confident disk, memory and
CPU problems by itself and sends DNS and firewall changes to people; the seed's
categories (cache, network, storage, security) follow its threshold table, and
server problems stay with people (L1).

The seed's numbers: nothing seeded acts by itself below the seed's "medium"
reliability band (SEED_MEDIUM_RELIABILITY, 60), and every policy that may act
without a person asks for the seed's step 6, three similar resolved tickets of a
known good pattern (SEED_SIMILAR_TICKETS). With no feedback and no history the
reliability score is 0.25 x confidence + 27.5 (scoring/reliability.py): a model at
0.9 scores 50.0, so a fresh install sends its first disk, memory and CPU problems
to people. Once three tickets of the same pattern were resolved and people said
so (positive, 5 stars), a fourth at 0.9 confidence with similarity 0.9 scores
0.25 x 90 + 0.30 x 100 + 0.25 x 100 + 0.20 x 100 = 97.5 and heals by itself;
even without the pattern factor it scores 77.5.
"""

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from governance.rules.facts import PolicySnapshot

READ_AND_SAFE = frozenset({"read_only", "safe_write"})
FORBIDDEN = ("delete", "format", "shutdown")
# The self-healing runbooks move files to quarantine and restart services; anything
# that reboots, removes or reformats is never theirs to run.
SELF_HEALING_FORBIDDEN = (*FORBIDDEN, "reboot", "rm", "mkfs")
# The seed's "medium" band: below it, "manual review required"; nothing seeded acts there.
SEED_MEDIUM_RELIABILITY = 60.0
# The seed's step 6: a pattern is known once this many similar tickets were resolved.
SEED_SIMILAR_TICKETS = 3
# Customer impact beyond half an hour is a person's call (PHASE-65's SLA rule).
SLA_MINUTES = 30.0


def _self_healing(category: str, what: str) -> dict[str, Any]:
    """Safe, reversible, frequent: act at L3 within a rate limit and a fifth of the fleet."""
    return {
        "name": f"{category}-self-healing",
        "category": category,
        "description": (
            f"{what} heal themselves at L3 when the model is at least 80% confident, "
            "reliability is at least 60 and 3 similar tickets were resolved: no approval, "
            "at most 10 actions an hour and 20% of the fleet at once."
        ),
        "enabled": True,
        "mode": "enforce",
        "autonomy_level": 3,
        "min_confidence_score": 0.8,
        "min_reliability_score": SEED_MEDIUM_RELIABILITY,
        "min_similar_tickets": SEED_SIMILAR_TICKETS,
        "min_positive_feedback_rate": 0.0,
        "allowed_action_types": READ_AND_SAFE,
        "allowed_systems": frozenset({"linux"}),
        "forbidden_commands": SELF_HEALING_FORBIDDEN,
        "allowed_hours_start": None,
        "allowed_hours_end": None,
        "allowed_days": frozenset(),
        "timezone": "UTC",
        "requires_approval": False,
        "auto_approve_threshold": None,  # unused while requires_approval is False
        "approvers": (),
        "max_actions_per_hour": 10,
        "requires_rollback_plan": True,
        "requires_backup": False,
        "required_approvals": 1,
        "critical_required_approvals": 2,
        "blast_radius_max_hosts": None,
        "blast_radius_max_percent": 20.0,
        "blast_radius_label": "",
        "customer_impact_sla_minutes": SLA_MINUTES,
        "min_auto_confidence_escalation": 0.6,
    }


def _with_people(category: str, description: str, **overrides: Any) -> dict[str, Any]:
    """Assisted (L1): every action waits for a person; overrides tune the thresholds."""
    policy = {
        "name": f"{category}-remediation",
        "category": category,
        "description": description,
        "enabled": True,
        "mode": "enforce",
        "autonomy_level": 1,
        "min_confidence_score": 0.9,
        "min_reliability_score": 90.0,
        "min_similar_tickets": 0,
        "min_positive_feedback_rate": 0.0,
        "allowed_action_types": READ_AND_SAFE,
        "allowed_systems": frozenset(),
        "forbidden_commands": FORBIDDEN,
        "allowed_hours_start": None,
        "allowed_hours_end": None,
        "allowed_days": frozenset(),
        "timezone": "UTC",
        "requires_approval": True,
        "auto_approve_threshold": None,
        "approvers": (),
        "max_actions_per_hour": 5,
        "requires_rollback_plan": True,
        "requires_backup": False,
        "required_approvals": 1,
        "critical_required_approvals": 2,
        "blast_radius_max_hosts": None,
        "blast_radius_max_percent": 10.0,
        "blast_radius_label": "",
        "customer_impact_sla_minutes": SLA_MINUTES,
        "min_auto_confidence_escalation": 0.6,
    }
    return {**policy, **overrides}


DEFAULT_POLICIES: tuple[dict[str, Any], ...] = (
    _self_healing("disk", "Full disks (temporary files, logs)"),
    _self_healing("memory", "Memory leaks (a service restart)"),
    _self_healing("cpu", "Runaway CPU (a reversible cap on the process)"),
    _with_people(
        "dns",
        "Resolver changes affect every lookup a host makes: a person approves each one, "
        "critical ones need two approvers, one host at a time.",
        name="dns-changes",
        blast_radius_max_hosts=1,
        blast_radius_max_percent=None,
    ),
    _with_people(
        "firewall",
        "Firewall changes are security-sensitive: a person approves each one, critical ones "
        "need two approvers, one host at a time.",
        name="firewall-changes",
        blast_radius_max_hosts=1,
        blast_radius_max_percent=None,
    ),
    # The seed's table: low risk and frequent; auto-approved at reliability 85.
    _with_people(
        "cache",
        "Cache clearing is low risk: acts at L2 (people notified) from reliability 85, "
        "asks for approval between 75 and 85.",
        autonomy_level=2,
        min_confidence_score=0.8,
        min_reliability_score=75.0,
        auto_approve_threshold=85.0,
        max_actions_per_hour=10,
        blast_radius_max_percent=20.0,
        min_similar_tickets=SEED_SIMILAR_TICKETS,
    ),
    _with_people(
        "network",
        "Network changes are medium risk: acts at L2 from reliability 90, asks for approval "
        "between 85 and 90.",
        autonomy_level=2,
        min_confidence_score=0.85,
        min_reliability_score=85.0,
        auto_approve_threshold=90.0,
        min_similar_tickets=SEED_SIMILAR_TICKETS,
    ),
    _with_people(
        "storage",
        "Storage changes are high risk: need a backup; acts at L2 only from reliability 95.",
        autonomy_level=2,
        min_reliability_score=90.0,
        auto_approve_threshold=95.0,
        requires_backup=True,
        min_similar_tickets=SEED_SIMILAR_TICKETS,
    ),
    _with_people(
        "security",
        "Security actions are critical: never auto-approved, a person approves every one.",
        min_confidence_score=0.95,
        min_reliability_score=95.0,
        auto_approve_threshold=None,
    ),
    _with_people(
        "server",
        "Server problems stay with people (L1) until their history earns more autonomy.",
        min_reliability_score=85.0,
        auto_approve_threshold=95.0,  # takes effect only if raised to L2
    ),
)


def default_policy(category: str) -> dict[str, Any]:
    """The default policy for `category`; raises KeyError when there is none."""
    for policy in DEFAULT_POLICIES:
        if policy["category"] == category:
            return dict(policy)
    raise KeyError(category)


def snapshot(policy: Mapping[str, Any], version: int = 0) -> PolicySnapshot:
    """A default policy as the engine reads it (its description dropped)."""
    names = {f.name for f in fields(PolicySnapshot)}
    return PolicySnapshot(version=version, **{k: v for k, v in policy.items() if k in names})


def model_fields(policy: Mapping[str, Any]) -> dict[str, Any]:
    """A default policy as Policy model fields: JSON fields take lists, not sets or tuples."""
    return {key: _as_json(value) for key, value in policy.items()}


def _as_json(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)  # sorted, so a migration writes the same rows every time
    if isinstance(value, tuple):
        return list(value)
    return value
