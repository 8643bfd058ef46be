"""The checks a runbook meets under a policy: its risk, its hard limits, the safety checks.

Pure functions of the facts (governance/rules/facts.py). The decision engine asks them
when it decides (governance/rules/engine.py), and dispatch asks them again where the
action starts (governance/rules/dispatch.py). A hard limit or a failed precondition is
a line saying why the runbook may not run at all, even with approval; the safety checks
(time window, rate limit, backup, system health, blast radius) are yes or no by name.
"""

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from governance.choices import AutonomyLevel, RiskLevel
from governance.rules.command_floor import runbook_refusals
from governance.rules.facts import NO_POLICY_LIMITS, PolicySnapshot, RunbookFacts, Statistics
from remediation.choices import ActionType, ForbiddenTouch

RISK_BY_ACTION_TYPE = {
    ActionType.READ_ONLY.value: RiskLevel.LOW.value,
    ActionType.SAFE_WRITE.value: RiskLevel.MEDIUM.value,
    ActionType.CRITICAL_WRITE.value: RiskLevel.HIGH.value,
}
# Indexed by datetime.weekday(); the same names as governance.models.WEEKDAYS.
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# The levels at which Warden acts by itself; L0 and L1 always ask a person, and an
# out-of-range level (L4 is refused by validation) is read as asking too.
ACTING_LEVELS = frozenset({AutonomyLevel.L2_CONDITIONAL.value, AutonomyLevel.L3_BOUNDED.value})
TOUCH_NAMES = {touch.value: str(touch.label).lower() for touch in ForbiddenTouch}


def risk_level(runbook: RunbookFacts | None) -> str:
    if runbook is None:
        return ""
    return RISK_BY_ACTION_TYPE.get(runbook.action_type, RiskLevel.HIGH.value)


def critical_traits(runbook: RunbookFacts | None) -> list[str]:
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


def required_approvals(limits: PolicySnapshot, critical: list[str]) -> int:
    # A critical action never needs fewer approvals than a safe one under the same policy.
    if critical:
        return max(limits.critical_required_approvals, limits.required_approvals, 1)
    return max(limits.required_approvals, 1)


def under(limits: PolicySnapshot) -> str:
    """The limits' name in a sentence: a policy, or the defaults when none is enabled."""
    if limits is NO_POLICY_LIMITS:
        return "the default limits (no enabled policy)"
    return f"policy {limits.name}"


def hard_limits(runbook: RunbookFacts | None, limits: PolicySnapshot) -> list[str]:
    """Why the runbook may not run at all under `limits`, even with approval."""
    if runbook is None:
        return []
    named = under(limits)
    lines = runbook_refusals(runbook.name, runbook.commands)  # the floor, under any policy
    lines += runbook.unrunnable
    for command in runbook.commands:
        word = forbidden_word(command, tuple(limits.forbidden_commands))
        if word:
            lines.append(
                f"Runbook {runbook.name} runs {command!r}, which contains the forbidden "
                f"command {word!r}: it may not run under {named}, even with approval."
            )
    if limits.allowed_systems and runbook.system not in limits.allowed_systems:
        lines.append(
            f"Runbook {runbook.name} acts on {runbook.system!r}, and {named} only allows "
            f"{', '.join(sorted(limits.allowed_systems))}: it may not run, even with approval."
        )
    if limits.requires_rollback_plan and not runbook.has_rollback_plan:
        lines.append(
            f"Runbook {runbook.name} has no rollback plan and {named} requires one: "
            "it may not run, even with approval."
        )
    return lines


def precondition_failures(
    runbook: RunbookFacts | None, limits: PolicySnapshot, stats: Statistics
) -> list[str]:
    """The seed's pre-execution checks no approval can waive: a required backup, a healthy host."""
    if runbook is None:
        return []
    lines = []
    if limits.requires_backup and not stats.backup_available:
        lines.append(
            f"No backup of the host is available and {under(limits)} requires one: "
            f"runbook {runbook.name} may not run, even with approval."
        )
    if not stats.system_healthy:
        lines.append(
            f"The host is not healthy enough to act on safely: runbook {runbook.name} "
            "may not run, even with approval."
        )
    return lines


@lru_cache(maxsize=256)
def _forbidden_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    # A whole-word match, case-insensitive: "delete" catches "find -delete", not "undeleted".
    cleaned = sorted({word.strip().lower() for word in words if word.strip()}, key=len)
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(word) for word in reversed(cleaned))
    return re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE)


def forbidden_word(command: str, words: tuple[str, ...]) -> str | None:
    """The first of `words` that `command` contains as a whole word, or None."""
    pattern = _forbidden_pattern(words)
    found = pattern.search(command) if pattern else None
    return found.group(1).lower() if found else None


def safety_checks(policy: PolicySnapshot, stats: Statistics, now: datetime) -> dict[str, bool]:
    """Step 5: each pre-execution check by name, plus all_passed."""
    checks = {
        "time_window_ok": in_time_window(policy, now),
        "rate_limit_ok": stats.actions_last_hour < policy.max_actions_per_hour,
        "backup_available": stats.backup_available or not policy.requires_backup,
        "system_healthy": stats.system_healthy,
        "blast_radius_ok": blast_radius_ok(policy, stats),
    }
    checks["all_passed"] = all(checks.values())
    return checks


def local_time(policy: PolicySnapshot, now: datetime) -> datetime | None:
    """`now` in the policy's time zone, or None when the zone cannot be read."""
    try:
        return now.astimezone(ZoneInfo(policy.timezone))
    except (KeyError, ValueError, OSError):  # unknown or malformed zone name
        return None


def in_time_window(policy: PolicySnapshot, now: datetime) -> bool:
    """Whether `now` is inside the policy's allowed days and hours, in its time zone.

    Hours run from start (inclusive) to end (exclusive); a window whose end is
    before its start crosses midnight, and its day is the day it started
    (Friday 22 -> 6 covers Saturday 05:59). start == end is the whole day.
    """
    local = local_time(policy, now)
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


def hosts_after(stats: Statistics) -> int:
    """Hosts under remediation in scope once this action starts."""
    return stats.hosts_under_remediation + (0 if stats.host_under_remediation else 1)


def blast_radius_ok(policy: PolicySnapshot, stats: Statistics) -> bool:
    if not stats.host_in_scope:
        return True  # the limit counts hosts with the label; this one is outside it
    after = hosts_after(stats)
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
