"""The rules asked again where an action starts: why it may not start, or must wait.

An execution is decided (governance/rules/engine.py), maybe approved, then started
later by a worker or claimed by an agent. Everything that could have changed in
between (the policy, the runbook, the approval, the clock, the fleet, the host's
readings) is asked again here, with the same checks and reason lines as the decision:
dispatch_refusals() cancels the execution, dispatch_waits() holds it until time passes.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from governance.choices import PolicyMode
from governance.rules.checks import (
    ACTING_LEVELS,
    hard_limits,
    precondition_failures,
    safety_checks,
)
from governance.rules.facts import NO_POLICY_LIMITS, PolicySnapshot, RunbookFacts, Statistics
from governance.rules.reasons import (
    autonomy_name,
    blast_radius_line,
    ceiling_note,
    rate_limit_line,
    time_window_line,
)


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
                f"Policy {active.name} is now at {autonomy_name(active.autonomy_level)}"
                f"{ceiling_note(active, 'autonomy_level')}: a person must approve this action."
            )
        elif ceiling_note(active, "requires_approval"):
            lines.append(
                f"Policy {active.name} now needs a person's approval for every action"
                f"{ceiling_note(active, 'requires_approval')}."
            )
        elif facts.pattern_level is not None and facts.pattern_level not in ACTING_LEVELS:
            lines.append(
                f"The ticket's pattern is now at {autonomy_name(facts.pattern_level)}: "
                "a person must approve this action."
            )
    limits = active or NO_POLICY_LIMITS
    lines += hard_limits(runbook, limits) + precondition_failures(runbook, limits, stats)
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
    checks = safety_checks(policy, stats, now)
    lines = []
    if not checks["time_window_ok"] and facts.decided_checks.get("time_window_ok", True):
        lines.append(time_window_line(policy, now))
    if not checks["blast_radius_ok"] and facts.decided_checks.get("blast_radius_ok", True):
        lines.append(blast_radius_line(policy, stats))
    if not checks["rate_limit_ok"] and facts.decided_checks.get("rate_limit_ok", True):
        lines.append(rate_limit_line(policy, stats))
    return lines
