"""Rows into the engine's facts: the policy, the runbook and the command decided, the ticket.

The engine (governance/rules/engine.py) decides from values alone; these read the rows a
decision depends on into those values (governance/rules/facts.py): the enabled policy
under the global ceilings and the version a decision records, the category's runbook and
the exact command filled from the ticket's parameters and checked against what the
host's agent allows, and the ticket itself.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery

from governance.models import Policy
from governance.rules import ceilings
from governance.rules.facts import PolicySnapshot, RunbookFacts, TicketFacts
from remediation.models import Host, Runbook, Ticket, shown
from warden_agent.argv import ArgvError, argv_digest, fill, mismatch


def with_versions(policies: QuerySet[Policy]) -> QuerySet[Policy]:
    """`policies`, each annotated with `latest_version`: its newest history id.

    Read in the same statement as the row, so the version a decision records is
    the edit whose values it used, even while someone saves the policy.
    """
    latest = (
        Policy.history.filter(id=OuterRef("pk")).order_by("-history_id").values("history_id")[:1]
    )
    return policies.annotate(latest_version=Subquery(latest))


def enabled_policy(category: str) -> Policy | None:
    """The enabled policy for `category` with its version, or None."""
    return with_versions(Policy.objects.filter(category=category, enabled=True)).first()


def policy_version(policy: Policy) -> int:
    """The policy's newest history id; 0 only for a row saved without history."""
    if hasattr(policy, "latest_version"):
        return policy.latest_version or 0
    latest = policy.history.order_by("-history_id").values_list("history_id", flat=True).first()
    return latest or 0


def runbook_version(runbook: Runbook) -> int | None:
    """The runbook's newest history id: what a decision, an approval and an execution bind to."""
    if hasattr(runbook, "latest_version"):
        return runbook.latest_version
    return runbook.history.order_by("-history_id").values_list("history_id", flat=True).first()


def runbook_for(category: str) -> Runbook | None:
    """The category's enabled runbook, annotated with its version in the same statement."""
    latest = (
        Runbook.history.filter(id=OuterRef("pk")).order_by("-history_id").values("history_id")[:1]
    )
    return (
        Runbook.objects.filter(category=category, enabled=True)
        .annotate(latest_version=Subquery(latest))
        .order_by("name")
        .first()
    )


def configured_ceilings() -> ceilings.Ceilings:
    """The ceilings config/settings.py read (and validated) from the environment."""
    return ceilings.Ceilings(
        auto_remediation_enabled=settings.AUTO_REMEDIATION_ENABLED,
        require_approval=settings.AUTO_REMEDIATION_REQUIRE_APPROVAL,
        max_actions_per_hour=settings.AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR,
        min_reliability=settings.AUTO_REMEDIATION_MIN_RELIABILITY,
        pattern_min_occurrences=settings.PATTERN_MIN_OCCURRENCES,
        pattern_min_positive_rate=settings.PATTERN_MIN_POSITIVE_RATE,
    )


def policy_snapshot(policy: Policy) -> PolicySnapshot:
    """The policy as the engine reads it, under the global ceilings (governance.rules.ceilings)."""
    return ceilings.apply_ceilings(_snapshot(policy), configured_ceilings())


def _snapshot(policy: Policy) -> PolicySnapshot:
    return PolicySnapshot(
        name=policy.name,
        category=policy.category,
        version=policy_version(policy),
        enabled=policy.enabled,
        mode=policy.mode,
        autonomy_level=policy.autonomy_level,
        min_confidence_score=policy.min_confidence_score,
        min_reliability_score=policy.min_reliability_score,
        min_similar_tickets=policy.min_similar_tickets,
        min_positive_feedback_rate=policy.min_positive_feedback_rate,
        allowed_action_types=frozenset(policy.allowed_action_types),
        allowed_systems=frozenset(policy.allowed_systems),
        forbidden_commands=tuple(policy.forbidden_commands),
        allowed_hours_start=policy.allowed_hours_start,
        allowed_hours_end=policy.allowed_hours_end,
        allowed_days=frozenset(policy.allowed_days),
        timezone=policy.timezone,
        requires_approval=policy.requires_approval,
        auto_approve_threshold=policy.auto_approve_threshold,
        approvers=tuple(policy.approvers),
        max_actions_per_hour=policy.max_actions_per_hour,
        requires_rollback_plan=policy.requires_rollback_plan,
        requires_backup=policy.requires_backup,
        required_approvals=policy.required_approvals,
        critical_required_approvals=policy.critical_required_approvals,
        blast_radius_max_hosts=policy.blast_radius_max_hosts,
        blast_radius_max_percent=policy.blast_radius_max_percent,
        blast_radius_label=policy.blast_radius_label,
        customer_impact_sla_minutes=policy.customer_impact_sla_minutes,
        min_auto_confidence_escalation=policy.min_auto_confidence_escalation,
    )


@dataclass(frozen=True)
class DecidedCommand:
    """The exact argv (and rollback argv) a decision fixes for one ticket, and why the
    ticket's host cannot run it as decided (one line each; empty when it can)."""

    argv: list[str]
    rollback_argv: list[str]
    unrunnable: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return argv_digest(self.argv) if self.argv else ""


def runbook_facts(runbook: Runbook, command: DecidedCommand | None = None) -> RunbookFacts:
    """The runbook as the engine reads it: with the exact command decided for a ticket and
    why that ticket's host cannot run it, when given."""
    return RunbookFacts(
        name=runbook.name,
        action_type=runbook.action_type,
        system=runbook.system,
        reversible=runbook.reversible,
        has_rollback_plan=runbook.has_rollback_plan,
        commands=tuple(shown(command.argv if command else runbook.argv)),
        touches=frozenset(runbook.touches),
        unrunnable=command.unrunnable if command else (),
    )


def decided_command(runbook: Runbook, ticket: Ticket) -> DecidedCommand:
    """The runbook's command templates filled from the ticket's parameters, checked against
    what the host's agent last said it allows."""
    try:
        argv = fill(runbook.argv, ticket.parameters)
        rollback = fill(runbook.rollback_argv, ticket.parameters)
    except ArgvError as exc:
        line = f"Runbook {runbook.name} cannot be run on {ticket.ticket_id}: {exc}."
        return DecidedCommand([], [], (line,))
    if runbook.handoff_target_id is not None:  # an automation system runs it, not the agent
        return DecidedCommand(argv, rollback)
    refusals = agent_refusals(ticket.host, runbook.action, argv)
    if runbook.rollback_action:
        refusals += agent_refusals(ticket.host, runbook.rollback_action, rollback)
    return DecidedCommand(argv, rollback, tuple(refusals))


def agent_refusals(host: Host, action: str, argv: Sequence[str]) -> list[str]:
    """Why `host`'s agent would refuse to run `argv` as `action`, by the allow-list it last
    reported (nothing when it has reported none: it will say so itself if it refuses)."""
    if not host.allowlist_digest:
        return []
    template = host.allowlist.get(action)
    if template is None:
        return [
            f"{host.name}'s agent would refuse it: its allow-list has no {action} "
            "(a person must add it on the host, or choose another runbook)."
        ]
    problem = mismatch(template, argv)
    if problem:
        return [f"{host.name}'s agent would refuse {action}: {problem}."]
    return []


def ticket_facts(ticket: Ticket) -> TicketFacts:
    return TicketFacts(
        ticket_id=ticket.ticket_id,
        category=ticket.category,
        host=ticket.host.name,
        host_labels=dict(ticket.host.labels),
        enable_auto_remediation=ticket.enable_auto_remediation,
        occurrence_count=ticket.occurrence_count,
        affects_billing=ticket.affects_billing,
        data_integrity=ticket.data_integrity,
        customer_impact_minutes=ticket.customer_impact_minutes,
        security_severity=ticket.security_severity,
    )
