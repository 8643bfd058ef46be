"""The rules asked again where an action starts, read from the rows; and whether a stored
decision runs by itself.

dispatch_check() reads what an execution about to start depends on now (its policy,
runbook and command, its approval, the fleet, the host's readings) and asks
governance/rules/dispatch.py why it may not start or must wait. Called under the
execution's row lock, by the worker that dispatches it and by the agent's claim.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from governance.decisions.facts import (
    DecidedCommand,
    decided_command,
    enabled_policy,
    policy_snapshot,
    runbook_facts,
    runbook_version,
)
from governance.decisions.stats import (
    has_backup,
    hosts_in_scope,
    lock_fleet_limits,
    pattern_level,
    readings_show_problem,
)
from governance.models import Decision
from governance.rules.dispatch import DispatchFacts, dispatch_refusals, dispatch_waits
from governance.rules.facts import AUTO_HEAL, Statistics
from remediation.choices import EXECUTION_ACTIVE_STATES, ExecutionState
from remediation.models import Execution


@dataclass(frozen=True)
class DispatchCheck:
    """What the rules say of an execution about to start: why it may not (it is
    cancelled), and why it must wait (it is held until they pass or its deadline)."""

    refusals: list[str]
    waits: list[str]


def dispatch_check(execution: Execution, now: datetime) -> DispatchCheck:
    """Why `execution` may not start now, or must wait (governance.rules.dispatch), one
    line each.

    Called where an action starts, under the execution's row lock, after the pauses
    (which hold): by the worker that dispatches it and by the agent's claim, so nothing
    reaches an agent the rules would not allow at that instant.
    """
    runbook = execution.runbook
    category = runbook.category
    policy = enabled_policy(category)
    decision = execution.decision
    request = execution.approval_request
    lock_fleet_limits()
    scope = hosts_in_scope(policy.blast_radius_label if policy else "")
    # This execution is active already: the others decide whether there is room for it.
    # Held ones act on nothing while they wait, and two held ones must not wait for each
    # other; the next to start is the longest waiting (release_held_executions).
    others = (
        Execution.objects.filter(state__in=EXECUTION_ACTIVE_STATES)
        .exclude(state=ExecutionState.HELD)
        .exclude(pk=execution.pk)
    )
    stats = Statistics(
        actions_last_hour=Execution.objects.filter(
            runbook__category=category, created_at__gte=now - timedelta(hours=1)
        )
        .exclude(state=ExecutionState.CANCELLED)
        .exclude(pk=execution.pk)
        .count(),
        hosts_under_remediation=others.filter(host__in=scope).values("host").distinct().count(),
        hosts_in_scope=max(scope.count(), 1),
        host_in_scope=scope.filter(pk=execution.host_id).exists(),
        host_under_remediation=others.filter(host_id=execution.host_id).exists(),
        backup_available=has_backup(execution.host),
        system_healthy=execution.host.enabled,
    )
    command = decided_command(runbook, execution.ticket)
    facts = DispatchFacts(
        category=category,
        automatic=request is None,
        decided_under_policy=bool(decision and decision.policy_id and not decision.shadow),
        decided_checks=dict(decision.safety_checks) if decision else {},
        decided_runbook_version=execution.runbook_version,
        runbook_version=runbook_version(runbook),
        # Caught even when an edit bypassed the use case and wrote no version, or the row's
        # command no longer matches its digest or the digest people approved.
        runbook_text_changed=not command_is_decided(execution, command),
        runbook_enabled=runbook.enabled,
        host_enabled=execution.host.enabled,
        approval_status=request.status if request else None,
        approval_expired=bool(request and request.expires_at <= now),
        readings_show_problem=readings_show_problem(
            execution.host_id, category, decision.sample_id if decision else None
        ),
        pattern_level=pattern_level(execution.ticket.pattern_id),
    )
    # The runbook as decided: its command then is what would run (the version check
    # above refuses a runbook edited since), against the host's allow-list now.
    snapshot = policy_snapshot(policy) if policy else None
    facts_now = runbook_facts(runbook, command)
    return DispatchCheck(
        refusals=dispatch_refusals(facts, snapshot, facts_now, stats, now),
        waits=dispatch_waits(facts, snapshot, stats, now),
    )


def command_is_decided(execution: Execution, command: DecidedCommand) -> bool:
    """Is the execution's command still exactly the one decided and approved: the runbook's
    text today fills to it, its digest is its own, and an approval bound that digest?"""
    request = execution.approval_request
    return (
        (execution.action or execution.runbook.action) == execution.runbook.action
        and execution.argv == command.argv
        and execution.rollback_argv == command.rollback_argv
        and execution.argv_digest == command.digest
        and (request is None or request.argv_digest == execution.argv_digest)
    )


def executes_automatically(decision: Decision) -> bool:
    """Whether a stored decision runs its runbook without a person (as the engine's
    Decision.executes_automatically says of a fresh one)."""
    return decision.outcome == AUTO_HEAL and decision.allowed and not decision.shadow
