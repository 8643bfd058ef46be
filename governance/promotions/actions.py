"""People's actions on autonomy: accept or dismiss a proposal one step up, acknowledge or
flag what Warden did by itself. Each is `(thing, *, actor, reason, now)`, checks its
permission and reason, and writes its change and events in one transaction.

    accept_proposal    the step through save_policy, or the pattern's level
                       ("policy.promoted" / "pattern.promoted", with the numbers; the
                       reason, optional, is kept as the proposal's note)
    dismiss_proposal   with a reason ("autonomy.dismissed")
    acknowledge_review what Warden did was right; the reason, optional, is the note
    flag_review        it was wrong, saying why: negative feedback on the ticket in the
                       person's name, which may lower the policy or pattern to L1 at once

Proposals are made by governance.promotions.proposals, reviews opened by
governance.promotions.reviews, demotions made by governance.promotions.demotions.
"""

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from feedback.models import Feedback, FeedbackType, PostActionReview, ReviewStatus
from feedback.verdicts import store_verdict, verdict_event
from governance.audit import permissions
from governance.audit.changes import record_change, require_permission, require_reason
from governance.audit.errors import Conflict
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.models import (
    AutonomyProposal,
    PatternAutonomy,
    Policy,
    ProposalChange,
    ProposalStatus,
)
from governance.policies.actions import save_policy
from governance.promotions.demotions import demote_after_feedback
from governance.promotions.proposals import close_proposal
from governance.promotions.records import pattern_name, policy_rung, target_version
from governance.promotions.reviews import NOTE_LIMIT, describe_action, utc
from governance.rules import autonomy


class ProposalError(Conflict):
    """A proposal that cannot be accepted or dismissed as asked; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__("conflict", message)


class ReviewError(Conflict):
    """A review that cannot be made; `code` is machine-readable, `message` for people."""


# --- Proposals -------------------------------------------------------------------------


def accept_proposal(
    proposal: AutonomyProposal, *, actor: Any, reason: str, now: datetime
) -> AutonomyProposal:
    """`actor` takes the step `proposal` offers: the policy (through save_policy) or the
    pattern moves one step up, audited with the numbers behind it; `reason` may be "".
    Refused, with nothing changed, if it is no longer open or its target was changed since
    it was computed (even back to how it looked)."""
    require_permission(actor, permissions.DECIDE_PROPOSAL, "accept autonomy proposals")
    note = (reason or "").strip()
    with transaction.atomic():
        proposal = _open_proposal(proposal)
        why = f"accepted proposal #{proposal.pk}: {proposal.summary}"
        why = f"{why} ({note})" if note else why
        data = {"proposal": proposal.pk, "numbers": proposal.numbers}
        events: list[PendingEvent] = []
        if proposal.policy_id:
            _promote_policy(proposal, actor, now, why, data, events)
        else:
            _promote_pattern(proposal, actor, now, why, data, events)
        proposal.status = ProposalStatus.ACCEPTED
        proposal.decided_by = actor
        proposal.decided_at = now
        proposal.note = note[:500]
        proposal.save(update_fields=["status", "decided_by", "decided_at", "note"])
        events.append(
            event(
                user_actor(actor),
                "autonomy.accepted",
                proposal,
                f"proposal #{proposal.pk} ({proposal}) accepted",
                data=data,
            )
        )
        append_events(events)
    return proposal


def dismiss_proposal(
    proposal: AutonomyProposal, *, actor: Any, reason: str, now: datetime
) -> AutonomyProposal:
    """`actor` turns a proposal down, saying why (`reason`, required); nothing else changes."""
    require_permission(actor, permissions.DECIDE_PROPOSAL, "dismiss autonomy proposals")
    why = require_reason(reason)
    with transaction.atomic():
        proposal = _open_proposal(proposal)
        events: list[PendingEvent] = []
        close_proposal(proposal, ProposalStatus.DISMISSED, actor, now, why, events)
        append_events(events)
    return proposal


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


def _promote_policy(
    proposal: AutonomyProposal, actor: Any, now: datetime, why: str, data: dict, events: list
) -> None:
    policy = Policy.objects.select_for_update().get(pk=proposal.policy_id)
    _require_same_version(proposal, target_version(policy), f"Policy {policy.name}")
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
        actor=actor,
        reason=why,
        now=now,
        action="policy.promoted",
        headline=f"policy {policy.name} {what}",
        data=data,
        events=events,
    )


def _require_same_version(proposal: AutonomyProposal, version: int | None, what: str) -> None:
    """Refuse a proposal computed on another version of its target: an edit since (even
    one raised and lowered back by hand, which looks the same) restarted the record its
    numbers came from. The next proposal run recomputes them."""
    if proposal.target_version is None or proposal.target_version != version:
        raise ProposalError(
            f"{what} was changed since proposal #{proposal.pk} was computed (version "
            f"{proposal.target_version or 'unknown'}, now {version}): nothing changed. Its "
            "numbers no longer describe it; the next proposal run recomputes them."
        )


def _promote_pattern(
    proposal: AutonomyProposal, actor: Any, now: datetime, why: str, data: dict, events: list
) -> None:
    row = PatternAutonomy.objects.select_for_update().filter(pattern=proposal.pattern_id).first()
    if row is not None:
        _require_same_version(proposal, target_version(row), "The pattern's level")
    if row is None or row.autonomy_level != proposal.from_level:
        level = f"L{row.autonomy_level}" if row is not None else "its policy's level"
        raise ProposalError(
            f"The pattern is at {level} now, not L{proposal.from_level}: nothing changed."
        )
    row.autonomy_level = proposal.to_level
    row.changed_at = now
    row.reason = why[:500]
    record_change(
        row,
        actor=actor,
        reason=why,
        action="pattern.promoted",
        headline=(
            f"{pattern_name(proposal.pattern)} raised from L{proposal.from_level} "
            f"to L{proposal.to_level}"
        ),
        data=data,
        events=events,
    )


# --- Reviews of what Warden did by itself ------------------------------------------------


def acknowledge_review(
    review: PostActionReview, *, actor: Any, reason: str, now: datetime
) -> PostActionReview:
    """`actor` has looked at what Warden did and finds it right; `reason`, the note, may
    be ""."""
    _check_reviewer(actor)
    text = (reason or "").strip()[:NOTE_LIMIT]
    with transaction.atomic():
        review = _locked_open(review)
        _mark(review, ReviewStatus.ACKNOWLEDGED, actor, text, now)
        execution = review.execution
        summary = f"{actor.get_username()} acknowledged {describe_action(execution)}"
        append_events(
            [
                event(
                    user_actor(actor),
                    "review.acknowledged",
                    review,
                    f"{summary}: {text}" if text else summary,
                    ticket_id=execution.ticket.ticket_id,
                    data={"execution": execution.pk, "note": text, **_timing(review, now)},
                )
            ]
        )
    return review


def flag_review(
    review: PostActionReview, *, actor: Any, reason: str, now: datetime
) -> PostActionReview:
    """`actor` finds what Warden did wrong, and says why (`reason`, required): the flag is
    negative feedback on the ticket in their name, counted on its pattern, and may lower
    the policy or pattern to L1 in this transaction (demotions.demote_after_feedback)."""
    _check_reviewer(actor)
    why = require_reason(reason)
    with transaction.atomic():
        review = _locked_open(review)
        execution = review.execution
        ticket = execution.ticket
        feedback = Feedback(
            ticket=ticket,
            feedback_type=FeedbackType.NEGATIVE,
            comment=f"Flagged in the review of execution #{execution.pk} "
            f"({execution.runbook.name}, at L{review.autonomy_level}): {why}",
            what_didnt_work=why,
        )
        # The flag is the person's verdict on the ticket: it replaces any earlier one of theirs.
        replaced = store_verdict(feedback, actor=actor, now=now)
        review.feedback = feedback
        _mark(review, ReviewStatus.FLAGGED, actor, why, now)
        events = [
            event(
                user_actor(actor),
                "review.flagged",
                review,
                f"{actor.get_username()} flagged {describe_action(execution)}: {why}",
                ticket_id=ticket.ticket_id,
                data={
                    "execution": execution.pk,
                    "reason": why,
                    "feedback": feedback.pk,
                    **_timing(review, now),
                },
            ),
            verdict_event(feedback, replaced, actor, review=review.pk),
        ]
        demote_after_feedback(feedback, now, events)
        append_events(events)
    return review


def _check_reviewer(actor: Any) -> None:
    if actor is None:  # a review names the person who made it (the database insists)
        raise PermissionDenied("a review is a person's: sign in to acknowledge or flag it")
    require_permission(actor, permissions.REVIEW, "review what Warden did by itself")


def _locked_open(review: PostActionReview) -> PostActionReview:
    locked = (
        PostActionReview.objects.select_for_update(of=("self",))
        .select_related("execution__ticket", "execution__runbook", "execution__host", "reviewed_by")
        .get(pk=review.pk)
    )
    if locked.status != ReviewStatus.OPEN:
        by = locked.reviewed_by.get_username() if locked.reviewed_by else "someone"
        raise ReviewError(
            "already_reviewed",
            f"{describe_action(locked.execution)} was already "
            f"{locked.get_status_display().lower()} by {by} at "
            f"{utc(locked.reviewed_at)}: a review is made once",
        )
    return locked


def _mark(review: PostActionReview, status: str, actor: Any, note: str, now: datetime) -> None:
    review.status = status
    review.reviewed_by = actor
    review.reviewed_at = now
    review.note = note
    review.save(update_fields=["status", "reviewed_by", "reviewed_at", "note", "feedback"])


def _timing(review: PostActionReview, now: datetime) -> dict[str, Any]:
    return {"due_at": review.due_at, "overdue": review.due_at <= now}
