"""The seed's global ceilings: environment variables that tighten every policy, never loosen.

AUTO_REMEDIATION_ENABLED=false       no policy acts by itself (autonomy at most L1)
AUTO_REMEDIATION_REQUIRE_APPROVAL    every action waits for a person (no auto-approval)
AUTO_REMEDIATION_MIN_RELIABILITY     minimum reliability = max(the policy's, this)
AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR  rate limit = min(the policy's, this)
PATTERN_MIN_OCCURRENCES / PATTERN_MIN_POSITIVE_RATE  raise the seed's pattern eligibility
    thresholds (below; feedback/patterns.py applies them), named so decisions can say so.

apply_ceilings is pure: a PolicySnapshot in, the tightened snapshot out, with a note for
each value a ceiling changed (PolicySnapshot.ceilings), which the engine quotes in the
reasons of any decision that value decided.
"""

from dataclasses import dataclass, replace

from governance.choices import AutonomyLevel
from governance.rules.facts import PolicySnapshot

# The seed's eligibility thresholds of a learned pattern (feedback/patterns.py applies them);
# PATTERN_MIN_* may only raise them.
ELIGIBLE_OCCURRENCES = 5
ELIGIBLE_POSITIVE_RATE = 0.85


@dataclass(frozen=True)
class Ceilings:
    """The global ceilings in force; the defaults are "no ceiling"."""

    auto_remediation_enabled: bool = True
    require_approval: bool = False
    max_actions_per_hour: int | None = None
    min_reliability: float | None = None
    pattern_min_occurrences: int | None = None
    pattern_min_positive_rate: float | None = None


def apply_ceilings(policy: PolicySnapshot, ceilings: Ceilings) -> PolicySnapshot:
    """`policy` with every value a ceiling is stricter than replaced by the ceiling's.

    A value the policy already holds at least as strictly is left alone and not noted.
    """
    changes: dict[str, object] = {}
    notes: list[tuple[str, str]] = []
    level = policy.autonomy_level
    if not ceilings.auto_remediation_enabled and level > AutonomyLevel.L1_ASSISTED:
        changes["autonomy_level"] = AutonomyLevel.L1_ASSISTED.value
        notes.append(
            (
                "autonomy_level",
                f"AUTO_REMEDIATION_ENABLED=false; policy {policy.name} alone would act "
                f"by itself at L{level}",
            )
        )
    if ceilings.require_approval and not (
        policy.requires_approval and policy.auto_approve_threshold is None
    ):
        changes["requires_approval"] = True
        changes["auto_approve_threshold"] = None
        alone = (
            f"auto-approves at reliability {policy.auto_approve_threshold:g}"
            if policy.requires_approval and policy.auto_approve_threshold is not None
            else "needs no approval"
        )
        notes.append(
            (
                "requires_approval",
                f"AUTO_REMEDIATION_REQUIRE_APPROVAL=true; policy {policy.name} alone {alone}",
            )
        )
    minimum = ceilings.min_reliability
    if minimum is not None and minimum > policy.min_reliability_score:
        changes["min_reliability_score"] = float(minimum)
        notes.append(
            (
                "min_reliability_score",
                f"AUTO_REMEDIATION_MIN_RELIABILITY={minimum:g}; policy {policy.name} alone "
                f"asks {policy.min_reliability_score:g}",
            )
        )
    rate = ceilings.max_actions_per_hour
    if rate is not None and rate < policy.max_actions_per_hour:
        changes["max_actions_per_hour"] = int(rate)
        notes.append(
            (
                "max_actions_per_hour",
                f"AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR={rate}; policy {policy.name} alone "
                f"allows {policy.max_actions_per_hour}",
            )
        )
    pattern = pattern_ceiling_note(ceilings)
    if pattern:
        notes.append(("pattern_eligibility", pattern))
    if not notes:
        return policy
    return replace(policy, **changes, ceilings=policy.ceilings + tuple(notes))


def pattern_ceiling_note(ceilings: Ceilings) -> str:
    """What the pattern ceilings raise above the seed's eligibility rule, or ""."""
    raised = []
    if (
        ceilings.pattern_min_occurrences is not None
        and ceilings.pattern_min_occurrences > ELIGIBLE_OCCURRENCES
    ):
        raised.append(f"PATTERN_MIN_OCCURRENCES={ceilings.pattern_min_occurrences}")
    if (
        ceilings.pattern_min_positive_rate is not None
        and ceilings.pattern_min_positive_rate > ELIGIBLE_POSITIVE_RATE
    ):
        raised.append(f"PATTERN_MIN_POSITIVE_RATE={ceilings.pattern_min_positive_rate:g}")
    return ", ".join(raised)
