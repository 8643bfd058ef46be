"""Reads what a decision depends on from the database, asks the engine, stores the answer.

governance/rules/engine.py decides from values alone; this module is the only place
that turns rows into those values and the engine's Decision back into a row.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery

from feedback import patterns
from feedback.models import Feedback
from governance.models import Decision, PatternAutonomy, Policy
from governance.pauses.actions import pauses_for
from governance.rules import ceilings, engine
from remediation.choices import (
    EXECUTION_ACTIVE_STATES,
    TICKET_OPEN_STATUSES,
    ExecutionState,
    TicketStatus,
)
from remediation.models import Counter, Execution, Host, Runbook, Ticket, shown
from scoring.models import MetricSample
from scoring.reliability import (
    FeedbackFact,
    ReliabilityBreakdown,
    ReliabilityInputs,
    reliability_score,
)
from scoring.samples import sample_shows_problem
from warden_agent.argv import ArgvError, argv_digest, fill, mismatch

# The Counter row whose lock serialises what counts fleet-wide limits (lock_fleet_limits).
FLEET_LIMITS_LOCK = "fleet-limits"
HISTORY_WINDOW = timedelta(days=180)  # the seed's "last 6 months"
RECENT_FEEDBACK_LIMIT = 200


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


def policy_snapshot(policy: Policy) -> engine.PolicySnapshot:
    """The policy as the engine reads it, under the global ceilings (governance.rules.ceilings)."""
    return ceilings.apply_ceilings(_snapshot(policy), configured_ceilings())


def _snapshot(policy: Policy) -> engine.PolicySnapshot:
    return engine.PolicySnapshot(
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


def runbook_facts(runbook: Runbook, command: DecidedCommand | None = None) -> engine.RunbookFacts:
    """The runbook as the engine reads it: with the exact command decided for a ticket and
    why that ticket's host cannot run it, when given."""
    return engine.RunbookFacts(
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


def ticket_facts(ticket: Ticket) -> engine.TicketFacts:
    return engine.TicketFacts(
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


def hosts_in_scope(label: str) -> Any:
    """The hosts a blast-radius limit counts: those carrying `label` (key=value), or all."""
    hosts = Host.objects.filter(enabled=True)
    if label:
        key, _, value = label.partition("=")
        hosts = hosts.filter(**{f"labels__{key}": value})
    return hosts


def has_backup(host: Host) -> bool:
    """Positive evidence only: the backup system labels hosts it has a fresh backup of."""
    return host.labels.get("backup") == "yes"


def statistics(
    ticket: Ticket,
    policy: Policy | None,
    now: datetime,
    pattern: patterns.PatternMatch | None = None,
) -> engine.Statistics:
    """What the category's history says about `ticket` as of `now`.

    `pattern` is the learned pattern a new ticket matches; without it, the one the
    ticket was counted on (read as it is today).

    History is read as it stood at `now` (feedback given and tickets closed by
    then, never `ticket` itself), so a simulation replaying a past ticket does
    not see its own outcome or anything later.
    """
    category = ticket.category
    active = Execution.objects.filter(state__in=EXECUTION_ACTIVE_STATES)
    scope = hosts_in_scope(policy.blast_radius_label if policy else "")
    since = now - HISTORY_WINDOW
    feedback_rows = list(
        Feedback.objects.filter(
            ticket__category=category, created_at__gte=since, created_at__lte=now
        )
        .order_by("-created_at")
        .values_list(
            "feedback_type", "rating", "created_at", "resolution_accurate", "actions_worked"
        )[:RECENT_FEEDBACK_LIMIT]
    )
    feedback = tuple(
        FeedbackFact(kind, rating, (now - created).total_seconds() / 86400, accurate, worked)
        for kind, rating, created, accurate, worked in feedback_rows
    )
    positives = sum(1 for fact in feedback if fact.feedback_type == "positive")
    # Closed by `now`: resolved (the success) or closed unresolved (the failure). Open
    # tickets have no outcome yet and would only drag the success rate down. A closed
    # row without a close time is read as closed long ago.
    closed = (
        Ticket.objects.filter(category=category)
        .filter(Q(resolved_at__lte=now) | Q(resolved_at__isnull=True))
        .exclude(status__in=TICKET_OPEN_STATUSES)
        .exclude(pk=ticket.pk)
    )
    recent_closed = closed.filter(opened_at__gte=since)
    found = pattern or _counted_pattern(ticket)
    return engine.Statistics(
        actions_last_hour=Execution.objects.filter(
            runbook__category=category, created_at__gte=now - timedelta(hours=1)
        )
        .exclude(state=ExecutionState.CANCELLED)
        .count(),
        hosts_under_remediation=active.filter(host__in=scope).values("host").distinct().count(),
        hosts_in_scope=max(scope.count(), 1),
        host_in_scope=scope.filter(pk=ticket.host_id).exists(),
        host_under_remediation=active.filter(host_id=ticket.host_id).exists(),
        backup_available=has_backup(ticket.host),
        # The host is reporting: this decision is about the sample it just sent.
        system_healthy=ticket.host.enabled,
        similar_resolved_tickets=closed.filter(status=TicketStatus.RESOLVED).count(),
        positive_feedback_rate=positives / len(feedback) if feedback else None,
        feedback=feedback,
        category_resolved=recent_closed.filter(status=TicketStatus.RESOLVED).count(),
        category_total=recent_closed.count(),
        pattern=patterns.facts(found),
        pattern_level=pattern_level(found.pattern.pk if found.pattern else None),
    )


def pattern_level(pattern_id: int | None) -> int | None:
    """The level a lowered pattern may act at (PatternAutonomy), or None: its policy's."""
    if pattern_id is None:
        return None
    rows = PatternAutonomy.objects.filter(pattern_id=pattern_id)
    return rows.values_list("autonomy_level", flat=True).first()


def _counted_pattern(ticket: Ticket) -> patterns.PatternMatch:
    if ticket.pattern is None:
        return patterns.PatternMatch(None, 0.0, ())
    similarity = ticket.pattern_similarity if ticket.pattern_similarity is not None else 1.0
    return patterns.PatternMatch(ticket.pattern, similarity, tuple(ticket.pattern.key_terms))


def decide_ticket(
    ticket: Ticket,
    *,
    severity: int,
    confidence: float,
    explanation: list,
    now: datetime,
    sample_id: int | None = None,
    model_version_id: int | None = None,
    occurrences: list[patterns.Occurrence] | None = None,
    probabilities: Sequence[float] = (),
    pattern_terms: Sequence[str] | None = None,
    statement: str = "",
) -> Decision:
    """Decide what to do about `ticket` now and store the decision whole.

    `probabilities` are the model's for each class on the sample (Classification's); a
    sample decided again without them keeps those its earlier decision recorded.

    A ticket another system opened (remediation/intake.py) passes the key terms of its
    text as `pattern_terms` (its pattern signal instead of the model's explanation) and,
    when no reading of the host shows the problem, a `statement` saying what the outcome
    rests on instead of the model's verdict.

    A ticket decided for the first time counts on its learned pattern: at once, or,
    given `occurrences`, appended there for the caller to record with
    patterns.record_occurrences just before its commit (the pattern's row is shared
    by every host with the same problem).
    """
    if not probabilities and sample_id is not None:
        probabilities = recorded_probabilities(sample_id)
    policy = enabled_policy(ticket.category)
    runbook = runbook_for(ticket.category)
    switches = engine.Switches(
        active_pauses=tuple(
            pause.describe() for pause in pauses_for(ticket.host_id, ticket.category, now)
        )
    )
    snapshot = policy_snapshot(policy) if policy else None
    # A ticket is counted on a pattern once, at its first decision.
    found = None
    if ticket.pattern_id is None:
        found = (
            patterns.match(ticket.category, explanation)
            if pattern_terms is None
            else patterns.match_terms(ticket.category, tuple(pattern_terms))
        )
    command = decided_command(runbook, ticket) if runbook else None
    lock_fleet_limits()  # before statistics() counts the blast radius and the rate limit
    result = engine.decide(
        ticket_facts(ticket),
        engine.ModelOutput(
            severity=severity,
            confidence=confidence,
            explanation=tuple((str(name), float(value)) for name, value in explanation),
            probabilities=tuple(float(p) for p in probabilities),
            statement=statement,
        ),
        snapshot,
        runbook_facts(runbook, command) if runbook else None,
        switches,
        statistics(ticket, policy, now, found),
        now,
    )
    if found is not None:
        occurrence = patterns.Occurrence(
            ticket,
            found,
            confidence=confidence,
            reliability=result.reliability.overall_score if result.reliability else 0.0,
            now=now,
        )
        if occurrences is None:
            patterns.record_occurrences([occurrence])
        else:
            occurrences.append(occurrence)
    return Decision.objects.create(
        ticket=ticket,
        sample_id=sample_id,
        model_version_id=model_version_id,
        policy=policy,
        policy_version=snapshot.version if snapshot else None,
        runbook=runbook,
        runbook_version=runbook_version(runbook) if runbook else None,
        action=runbook.action if runbook else "",
        argv=command.argv if command else [],
        rollback_argv=command.rollback_argv if command else [],
        argv_digest=command.digest if command else "",
        outcome=result.outcome,
        model_outcome=result.model_outcome,
        confidence=confidence,
        allowed=result.allowed,
        requires_approval=result.requires_approval,
        required_approvals=result.required_approvals,
        action_type=result.action_type,
        risk_level=result.risk_level,
        shadow=result.shadow,
        reasons=list(result.reasons),
        safety_checks=dict(result.safety_checks),
        reliability=asdict(result.reliability) if result.reliability else {},
        explanation=[[name, value] for name, value in explanation],
        probabilities=[float(p) for p in probabilities],
        created_at=now,
    )


def current_reliability(ticket: Ticket, now: datetime) -> ReliabilityBreakdown | None:
    """The ticket's reliability score as of `now`, or None before its first decision.

    Its latest decision's model confidence, read against the category's feedback and
    history and the ticket's pattern as they stand now: feedback given since the decision
    moves it at once (what the decision itself used stays in Decision.reliability).
    """
    confidence = (
        ticket.decisions.order_by("-created_at").values_list("confidence", flat=True).first()
    )
    if confidence is None:
        return None
    stats = statistics(ticket, enabled_policy(ticket.category), now)
    return reliability_score(
        ReliabilityInputs(
            ai_confidence=confidence,
            feedback=stats.feedback,
            category_resolved=stats.category_resolved,
            category_total=stats.category_total,
            pattern=stats.pattern,
        )
    )


def recorded_probabilities(sample_id: int) -> list[float]:
    """The class probabilities the newest decision on this sample recorded (or none)."""
    recorded = (
        Decision.objects.filter(sample_id=sample_id)
        .order_by("-created_at")
        .values_list("probabilities", flat=True)
        .first()
    )
    return list(recorded or [])


def newest_sample(host_id: int) -> MetricSample | None:
    return MetricSample.objects.filter(host_id=host_id).order_by("-taken_at").first()


def readings_show_problem(host_id: int, category: str, decided_sample_id: int | None) -> bool:
    """Do the host's newest readings still show the problem decided on?

    True when nothing newer than the decision's own sample has arrived (or the
    ticket came from elsewhere, with no readings at all).
    """
    sample = newest_sample(host_id)
    if sample is None or sample.pk == decided_sample_id:
        return True
    return sample_shows_problem(sample, category)


@dataclass(frozen=True)
class DispatchCheck:
    """What the rules say of an execution about to start: why it may not (it is
    cancelled), and why it must wait (it is held until they pass or its deadline)."""

    refusals: list[str]
    waits: list[str]


def lock_fleet_limits() -> None:
    """Serialise everything that counts the blast radius and the rate limit, until commit.

    Those limits are fleet-wide counts (hosts under remediation, actions in the last hour):
    two decisions counting at once would both see room for one more. One row lock, taken
    last (after the host's and the execution's), makes each decision and dispatch see the
    executions the others created. SQLite's immediate transactions serialise anyway.
    """
    list(Counter.objects.select_for_update().filter(name=FLEET_LIMITS_LOCK))


def dispatch_check(execution: Execution, now: datetime) -> DispatchCheck:
    """Why `execution` may not start now, or must wait (engine.dispatch_refusals and
    engine.dispatch_waits), one line each.

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
    stats = engine.Statistics(
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
    facts = engine.DispatchFacts(
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
        refusals=engine.dispatch_refusals(facts, snapshot, facts_now, stats, now),
        waits=engine.dispatch_waits(facts, snapshot, stats, now),
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
    return decision.outcome == engine.AUTO_HEAL and decision.allowed and not decision.shadow
