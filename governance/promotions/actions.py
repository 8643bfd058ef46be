"""Autonomy earned and lost: proposals one step up, a supervisor's click, demotion at once.

governance/rules/autonomy.py decides from values; this module reads the track records into
those values and acts on the answers through the use cases, each change audited:

    propose_promotions(now)          the warden-autonomy schedule (governance.tasks)
      each enabled, enforcing policy, and each lowered pattern whose policy stands higher
      -> its fixes and feedback since it reached its level -> autonomy.promotion_for
      -> an AutonomyProposal with the numbers ("autonomy.proposed"), superseding an open
         one that no longer holds ("autonomy.superseded")
    accept_proposal(proposal, user)  one click: the step through save_policy, or the
      pattern's level ("policy.promoted" / "pattern.promoted", with the numbers)
    dismiss_proposal(...)            with a note ("autonomy.dismissed")
    demote_after_failure(execution)  remediation.executions, in the transaction where an
      automatic fix failed or a supervisor rolled one back
    demote_after_feedback(feedback)  feedback.verdicts, in the feedback's transaction
      -> autonomy.demotion_for -> back to L1 ("policy.demoted" / "pattern.demoted", with
         the ticket, so governance.notices.delivery tells the supervisors why)

Lock order: the execution (caller), then the policy, then the pattern's level.
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Avg, Count, FloatField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from feedback.models import Feedback, FeedbackType, Pattern
from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason, save_governed
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.choices import PolicyMode
from governance.decisions.deciding import HISTORY_WINDOW, RECENT_FEEDBACK_LIMIT
from governance.models import (
    AutonomyProposal,
    PatternAutonomy,
    Policy,
    ProposalChange,
    ProposalStatus,
)
from governance.policies.actions import save_policy, thresholds
from governance.rules import autonomy
from remediation.choices import ExecutionState
from remediation.models import Execution

# How a fix that ran ended badly: failed, rolled back (or rolling back), or its rollback failed.
FAILED_ENDINGS = (
    ExecutionState.FAILED,
    ExecutionState.ROLLBACK_PENDING,
    ExecutionState.ROLLING_BACK,
    ExecutionState.ROLLED_BACK,
    ExecutionState.ROLLBACK_FAILED,
)
# Stopped while running: it ran, and nothing verified that it worked.
STOPPED_RUNNING = Q(state=ExecutionState.CANCELLED, started_at__isnull=False)


class ProposalError(Exception):
    """A proposal that cannot be accepted or dismissed as asked; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- Reading ---------------------------------------------------------------------------


def policy_rung(policy: Policy) -> autonomy.Rung:
    return autonomy.Rung(policy.autonomy_level, policy.requires_approval)


def level_since(policy: Policy) -> datetime | None:
    """When `policy` reached its level and approval rule: the oldest of its newest history
    versions that all have them (None without history)."""
    since = None
    versions = policy.history.order_by("-history_id").values_list(
        "autonomy_level", "requires_approval", "history_date"
    )
    for level, approval, at in versions.iterator():
        if (level, approval) != (policy.autonomy_level, policy.requires_approval):
            break
        since = at
    return since


def ended_badly(executions: QuerySet[Execution]) -> QuerySet[Execution]:
    return executions.filter(Q(state__in=FAILED_ENDINGS) | STOPPED_RUNNING)


def track_record(executions: QuerySet[Execution], since: datetime | None) -> autonomy.TrackRecord:
    """The fixes among `executions` decided since `since` that have ended, and the feedback
    given on their tickets since then (three aggregate queries)."""
    if since is not None:
        executions = executions.filter(created_at__gte=since)
    ended = executions.filter(
        Q(state=ExecutionState.SUCCEEDED) | Q(state__in=FAILED_ENDINGS) | STOPPED_RUNNING
    )
    counts = ended.aggregate(
        fixes=Count("pk"),
        succeeded=Count("pk", filter=Q(state=ExecutionState.SUCCEEDED)),
        reliability=Avg(
            Cast(KeyTextTransform("overall_score", "decision__reliability"), FloatField())
        ),
    )
    feedback = Feedback.objects.filter(ticket__in=ended.values("ticket"))
    if since is not None:
        feedback = feedback.filter(created_at__gte=since)
    said = feedback.aggregate(
        given=Count("pk"), positive=Count("pk", filter=Q(feedback_type=FeedbackType.POSITIVE))
    )
    return autonomy.TrackRecord(
        since=since,
        fixes=counts["fixes"],
        succeeded=counts["succeeded"],
        feedback=said["given"],
        positive=said["positive"],
        reliability=counts["reliability"],
    )


def pattern_name(pattern: Pattern) -> str:
    return f"pattern {pattern.category}: {', '.join(pattern.key_terms) or 'no key terms'}"


def _pattern_rung(policy: Policy | None, row: PatternAutonomy | None) -> autonomy.Rung:
    """How far a pattern may act: its policy's level, capped by its own if it was lowered."""
    level = policy.autonomy_level if policy is not None else autonomy.L3
    if row is not None:
        level = min(level, row.autonomy_level)
    return autonomy.Rung(level)


def _category_feedback(category: str, now: datetime) -> autonomy.FeedbackShare:
    """The category's positive share as the engine reads it (governance.decisions.deciding)."""
    recent = list(
        Feedback.objects.filter(
            ticket__category=category, created_at__gte=now - HISTORY_WINDOW, created_at__lte=now
        )
        .order_by("-created_at")
        .values_list("feedback_type", flat=True)[:RECENT_FEEDBACK_LIMIT]
    )
    return autonomy.FeedbackShare(len(recent), recent.count(FeedbackType.POSITIVE))


def _pattern_feedback(pattern: Pattern) -> autonomy.FeedbackShare:
    given = pattern.positive_count + pattern.negative_count + pattern.neutral_count
    return autonomy.FeedbackShare(given, pattern.positive_count)


# --- Proposals -------------------------------------------------------------------------


def propose_promotions(now: datetime) -> int:
    """Propose one step up wherever a track record earned it; returns how many were made.

    Safe to run any number of times: an open proposal that still holds is kept, one that
    no longer does is superseded. One short transaction per policy or pattern.
    """
    made = 0
    policies = Policy.objects.filter(
        Q(enabled=True, mode=PolicyMode.ENFORCE) | Q(proposals__status=ProposalStatus.PROPOSED)
    ).distinct()
    for pk in policies.values_list("pk", flat=True):
        with transaction.atomic():
            made += _propose_for_policy(pk, now)
    patterns = Pattern.objects.filter(
        Q(autonomy__autonomy_level__lt=autonomy.L3)
        | Q(autonomy_proposals__status=ProposalStatus.PROPOSED)
    ).distinct()
    for pk in patterns.values_list("pk", flat=True):
        with transaction.atomic():
            made += _propose_for_pattern(pk, now)
    return made


def _propose_for_policy(pk: int, now: datetime) -> int:
    policy = Policy.objects.select_for_update().get(pk=pk)
    proposal = None
    if policy.enabled and policy.mode == PolicyMode.ENFORCE:
        record = track_record(
            Execution.objects.filter(decision__policy=policy), level_since(policy)
        )
        proposal = autonomy.promotion_for(record, thresholds(), policy_rung(policy))
    current = policy.proposals.filter(status=ProposalStatus.PROPOSED).first()
    return _settle(current, proposal, {"policy": policy}, f"policy {policy.name}", now)


def _propose_for_pattern(pk: int, now: datetime) -> int:
    pattern = Pattern.objects.get(pk=pk)
    policy = Policy.objects.filter(category=pattern.category, enabled=True).first()
    row = PatternAutonomy.objects.select_for_update().filter(pattern=pattern).first()
    proposal = None
    # Raising a pattern above its policy would change nothing: it waits for the policy.
    if row is not None and policy is not None and policy.autonomy_level > row.autonomy_level:
        record = track_record(Execution.objects.filter(ticket__pattern=pattern), row.changed_at)
        proposal = autonomy.promotion_for(
            record, thresholds(), autonomy.Rung(row.autonomy_level), approval_step=False
        )
    current = pattern.autonomy_proposals.filter(status=ProposalStatus.PROPOSED).first()
    return _settle(current, proposal, {"pattern": pattern}, pattern_name(pattern), now)


def _settle(
    current: AutonomyProposal | None,
    proposal: autonomy.Proposal | None,
    target: dict[str, Any],
    name: str,
    now: datetime,
) -> int:
    """Keep, supersede or make the target's open proposal; returns 1 if one was made."""
    events: list[PendingEvent] = []
    if current is not None:
        if proposal is not None and _same_step(current, proposal):
            return 0  # still holds
        why = (
            f"{name} now stands at L{proposal.current.level}"
            if proposal is not None
            else f"{name}'s record no longer earns it, or it changed since"
        )
        _close(current, ProposalStatus.SUPERSEDED, None, now, why, events)
    made = 0
    if proposal is not None:
        row = AutonomyProposal.objects.create(
            **target,
            change=proposal.change,
            from_level=proposal.current.level,
            to_level=proposal.proposed.level,
            numbers=dict(proposal.numbers),
            summary=f"{name}: {proposal.summary}"[:500],
            created_at=now,
        )
        events.append(
            event(
                "system",
                "autonomy.proposed",
                row,
                f"proposed one step more autonomy for {row.summary}",
                data={"target": name, "change": row.change, "numbers": row.numbers},
            )
        )
        made = 1
    append_events(events)
    return made


def _same_step(current: AutonomyProposal, proposal: autonomy.Proposal) -> bool:
    return (current.change, current.from_level, current.to_level) == (
        proposal.change,
        proposal.current.level,
        proposal.proposed.level,
    )


def _close(
    proposal: AutonomyProposal,
    status: str,
    user: Any,
    now: datetime,
    why: str,
    events: list[PendingEvent],
) -> None:
    proposal.status = status
    proposal.decided_by = user
    proposal.decided_at = now
    proposal.note = why[:500]
    proposal.save(update_fields=["status", "decided_by", "decided_at", "note"])
    events.append(
        event(
            user_actor(user),
            f"autonomy.{status}",
            proposal,
            f"proposal #{proposal.pk} ({proposal}) {status}: {why}",
            data={"status": status},
        )
    )


def _supersede_open(target: dict[str, Any], why: str, now: datetime, events: list) -> None:
    for proposal in AutonomyProposal.objects.select_for_update().filter(
        status=ProposalStatus.PROPOSED, **target
    ):
        _close(proposal, ProposalStatus.SUPERSEDED, None, now, why, events)


def _open_proposal(proposal: AutonomyProposal) -> AutonomyProposal:
    locked = (
        # of=self: PostgreSQL cannot lock the nullable side of the outer joins.
        AutonomyProposal.objects.select_for_update(of=("self",))
        .select_related("policy", "pattern")
        .get(pk=proposal.pk)
    )
    if locked.status != ProposalStatus.PROPOSED:
        raise ProposalError(f"Proposal #{locked.pk} is {locked.get_status_display().lower()}.")
    return locked


def accept_proposal(
    proposal: AutonomyProposal, *, user: Any, now: datetime, note: str = ""
) -> AutonomyProposal:
    """A supervisor takes the step `proposal` offers: the policy (through save_policy) or
    the pattern moves one step up, audited with the numbers behind it. Refused, with
    nothing changed, if it is no longer open or its target moved since it was made."""
    require_permission(user, permissions.DECIDE_PROPOSAL, "accept autonomy proposals")
    note = (note or "").strip()
    with transaction.atomic():
        proposal = _open_proposal(proposal)
        reason = f"accepted proposal #{proposal.pk}: {proposal.summary}"
        reason = f"{reason} ({note})" if note else reason
        data = {"proposal": proposal.pk, "numbers": proposal.numbers}
        events: list[PendingEvent] = []
        if proposal.policy_id:
            _promote_policy(proposal, user, reason, data, events)
        else:
            _promote_pattern(proposal, user, now, reason, data, events)
        proposal.status = ProposalStatus.ACCEPTED
        proposal.decided_by = user
        proposal.decided_at = now
        proposal.note = note[:500]
        proposal.save(update_fields=["status", "decided_by", "decided_at", "note"])
        events.append(
            event(
                user_actor(user),
                "autonomy.accepted",
                proposal,
                f"proposal #{proposal.pk} ({proposal}) accepted",
                data=data,
            )
        )
        append_events(events)
    return proposal


def _promote_policy(
    proposal: AutonomyProposal, user: Any, reason: str, data: dict, events: list
) -> None:
    policy = Policy.objects.select_for_update().get(pk=proposal.policy_id)
    rung = policy_rung(policy)
    step = autonomy.next_step(rung)
    if step is None or (step[0], rung.level, step[1].level) != (
        proposal.change,
        proposal.from_level,
        proposal.to_level,
    ):
        raise ProposalError(
            f"Policy {policy.name} is at L{policy.autonomy_level} "
            f"({'approval required' if policy.requires_approval else 'no approval'}) now, "
            "not where the proposal found it: nothing changed."
        )
    policy.autonomy_level, policy.requires_approval = step[1].level, step[1].requires_approval
    what = (
        "approval no longer needed at L3"
        if proposal.change == ProposalChange.DROP_APPROVAL
        else f"raised from L{proposal.from_level} to L{proposal.to_level}"
    )
    save_policy(
        policy,
        user=user,
        reason=reason,
        action="policy.promoted",
        headline=f"policy {policy.name} {what}",
        data=data,
        events=events,
    )


def _promote_pattern(
    proposal: AutonomyProposal, user: Any, now: datetime, reason: str, data: dict, events: list
) -> None:
    row = PatternAutonomy.objects.select_for_update().filter(pattern=proposal.pattern_id).first()
    if row is None or row.autonomy_level != proposal.from_level:
        level = f"L{row.autonomy_level}" if row is not None else "its policy's level"
        raise ProposalError(
            f"The pattern is at {level} now, not L{proposal.from_level}: nothing changed."
        )
    row.autonomy_level = proposal.to_level
    row.changed_at = now
    row.reason = reason[:500]
    save_governed(
        row,
        user=user,
        reason=reason,
        action="pattern.promoted",
        headline=(
            f"{pattern_name(proposal.pattern)} raised from L{proposal.from_level} "
            f"to L{proposal.to_level}"
        ),
        data=data,
        events=events,
    )


def dismiss_proposal(
    proposal: AutonomyProposal, *, user: Any, now: datetime, note: str
) -> AutonomyProposal:
    """A supervisor turns a proposal down, saying why; nothing else changes."""
    require_permission(user, permissions.DECIDE_PROPOSAL, "dismiss autonomy proposals")
    why = require_reason(note)
    with transaction.atomic():
        proposal = _open_proposal(proposal)
        events: list[PendingEvent] = []
        _close(proposal, ProposalStatus.DISMISSED, user, now, why, events)
        append_events(events)
    return proposal


# --- Demotions -------------------------------------------------------------------------


def demote_after_failure(
    execution: Execution, now: datetime, events: list[PendingEvent]
) -> list[autonomy.Demotion]:
    """An automatic fix failed, was stopped while running, or a supervisor is rolling it
    back: lower its policy and its pattern to L1 if the window now holds too many such.

    Expects the caller's transaction with `execution` locked and in its new state (saved
    or not); the events join the caller's `events`. Returns the demotions made.
    """
    if execution.approval_request_id is not None:
        return []  # people approved it: a failure of theirs, not of the automation
    ticket = execution.ticket
    decision = execution.decision
    policy = (
        Policy.objects.select_for_update().filter(pk=decision.policy_id).first()
        if decision is not None and decision.policy_id
        else None
    )
    limits = thresholds()
    recent = ended_badly(
        Execution.objects.filter(
            approval_request__isnull=True, state_changed_at__gte=now - limits.demotion_window
        ).exclude(pk=execution.pk)
    )
    this = autonomy.Outcome(execution.pk, now, failed=True)

    def outcomes(executions: QuerySet[Execution]) -> list[autonomy.Outcome]:
        rows = executions.values_list("pk", "state_changed_at")
        return [autonomy.Outcome(pk, at, failed=True) for pk, at in rows] + [this]

    made = []
    pattern_demotion = None
    if ticket.pattern_id is not None:
        row = PatternAutonomy.objects.select_for_update().filter(pattern=ticket.pattern_id).first()
        pattern_demotion = autonomy.demotion_for(
            outcomes(recent.filter(ticket__pattern=ticket.pattern_id)),
            None,
            _pattern_rung(policy, row),
            minimum_positive_rate=0.0,
            thresholds=limits,
            now=now,
            since=row.changed_at if row is not None else None,
        )
    if policy is not None:
        demotion = autonomy.demotion_for(
            outcomes(recent.filter(decision__policy=policy)),
            None,
            policy_rung(policy),
            minimum_positive_rate=0.0,
            thresholds=limits,
            now=now,
            since=level_since(policy),
        )
        if demotion is not None:
            _demote_policy(policy, demotion, ticket.ticket_id, now, events)
            made.append(demotion)
    if pattern_demotion is not None:
        _demote_pattern(ticket.pattern, pattern_demotion, ticket.ticket_id, now, events)
        made.append(pattern_demotion)
    return made


def demote_after_feedback(
    feedback: Feedback, now: datetime, events: list[PendingEvent]
) -> list[autonomy.Demotion]:
    """A person's feedback may take the positive share below the policy's minimum: then
    the category's policy, or the ticket's pattern, goes back to L1 at once.

    Expects the caller's transaction, after the feedback was counted on the pattern.
    """
    ticket = feedback.ticket
    policy = (
        Policy.objects.select_for_update().filter(category=ticket.category, enabled=True).first()
    )
    if policy is None:
        return []
    limits = thresholds()
    minimum = policy.min_positive_feedback_rate
    made = []
    pattern_demotion = None
    if ticket.pattern_id is not None:
        row = PatternAutonomy.objects.select_for_update().filter(pattern=ticket.pattern_id).first()
        pattern = Pattern.objects.get(pk=ticket.pattern_id)
        pattern_demotion = autonomy.demotion_for(
            [],
            _pattern_feedback(pattern),
            _pattern_rung(policy, row),
            minimum_positive_rate=minimum,
            thresholds=limits,
            now=now,
        )
    demotion = autonomy.demotion_for(
        [],
        _category_feedback(ticket.category, now),
        policy_rung(policy),
        minimum_positive_rate=minimum,
        thresholds=limits,
        now=now,
    )
    if demotion is not None:
        _demote_policy(policy, demotion, ticket.ticket_id, now, events)
        made.append(demotion)
    if pattern_demotion is not None:
        _demote_pattern(pattern, pattern_demotion, ticket.ticket_id, now, events)
        made.append(pattern_demotion)
    return made


def _lowered_from(rung: autonomy.Rung) -> str:
    approval = "" if rung.requires_approval else " without approval"
    return f"L{rung.level}{approval}"


def _demote_policy(
    policy: Policy, demotion: autonomy.Demotion, ticket_id: str, now: datetime, events: list
) -> None:
    policy.autonomy_level = demotion.lowered.level
    policy.requires_approval = demotion.lowered.requires_approval
    save_policy(
        policy,
        user=None,
        reason=demotion.reason,
        action="policy.demoted",
        headline=(
            f"policy {policy.name} lowered from {_lowered_from(demotion.current)} to "
            f"L{demotion.lowered.level} (a person approves every action)"
        ),
        data={
            "cause": demotion.cause,
            "from": demotion.current.level,
            "to": demotion.lowered.level,
            "numbers": dict(demotion.numbers),
        },
        ticket_id=ticket_id,
        events=events,
    )
    _supersede_open({"policy": policy}, f"policy {policy.name} was lowered to L1", now, events)


def _demote_pattern(
    pattern: Pattern, demotion: autonomy.Demotion, ticket_id: str, now: datetime, events: list
) -> None:
    row = PatternAutonomy.objects.select_for_update().filter(pattern=pattern).first()
    row = row or PatternAutonomy(pattern=pattern)
    row.autonomy_level = demotion.lowered.level
    row.changed_at = now
    row.reason = demotion.reason[:500]
    name = pattern_name(pattern)
    save_governed(
        row,
        user=None,
        reason=demotion.reason,
        action="pattern.demoted",
        headline=(
            f"{name} lowered from {_lowered_from(demotion.current)} to "
            f"L{demotion.lowered.level} (a person approves its fixes)"
        ),
        data={
            "cause": demotion.cause,
            "pattern": pattern.pk,
            "from": demotion.current.level,
            "to": demotion.lowered.level,
            "numbers": dict(demotion.numbers),
        },
        ticket_id=ticket_id,
        events=events,
    )
    _supersede_open({"pattern": pattern}, f"{name} was lowered to L1", now, events)
