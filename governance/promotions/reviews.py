"""Post-action reviews: people look at what Warden did by itself (PHASE-65's oversight).

At L2 and L3 Warden acts without asking; so each automatic execution that ends (verified,
failed, rolled back or not) gets one review, and people are told: a notice each at L2, one
digest at L3 (governance.notices.delivery). Within WARDEN_REVIEW_DUE_HOURS a person who may review
(feedback.review_postactionreview: supervisors and approvers) acknowledges it, or flags it
with a reason. A flag is negative feedback on the ticket, attributed to that person and
counted on its pattern like any other (governance.promotions.actions may then lower the policy or
pattern to L1 at once). A review past its due time shows as overdue on the console and the
admin's home page until someone makes it; a review is made once and never deleted.

    remediation.executions, where an automatic execution ends, in its transaction:
        events += open_review(execution, now)
    the admin's review actions:
        acknowledge_review(review, user=..., note=..., now=...)
        flag_review(review, user=..., reason=..., now=...)
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet

from feedback import patterns
from feedback.models import (
    FINAL_OUTCOMES,
    Feedback,
    FeedbackType,
    PostActionReview,
    ReviewStatus,
)
from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.choices import AutonomyLevel
from governance.notices.delivery import levels_acted_at
from governance.promotions.actions import demote_after_feedback
from remediation.choices import ExecutionState
from remediation.models import Execution

REVIEWED_LEVELS = frozenset({AutonomyLevel.L2_CONDITIONAL, AutonomyLevel.L3_BOUNDED})
FINAL_STATES = frozenset(value for value, _ in FINAL_OUTCOMES)
NOTE_LIMIT = 2000


class ReviewError(Exception):
    """A review that cannot be made; `code` is machine-readable, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def open_reviews() -> QuerySet[PostActionReview]:
    return PostActionReview.objects.filter(status=ReviewStatus.OPEN)


def overdue_reviews(now: datetime) -> QuerySet[PostActionReview]:
    """Open reviews past their due time, the longest overdue first, with what they are of."""
    return (
        open_reviews()
        .filter(due_at__lte=now)
        .select_related("execution__ticket", "execution__host", "execution__runbook")
        .order_by("due_at", "pk")
    )


def utc(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe_action(execution: Execution) -> str:
    """'clean-disk on web-01 (INC-…)': what a review is about, as people read it."""
    return f"{execution.runbook.name} on {execution.host.name} ({execution.ticket.ticket_id})"


def open_review(execution: Execution, now: datetime) -> list[PendingEvent]:
    """Open the review of `execution` if Warden ran it by itself at L2 or L3 and it has
    ended (succeeded, failed, rolled back or not), and return the audit event that tells
    people (the notice follows the commit). Call it in the transaction in which the
    execution reaches its state. Anything else opens nothing and returns no events: an
    execution a person approved, one not ended (a cancelled one was handed to people
    already), or one already reviewed (its rollback finishing after its failure, say)."""
    if execution.approval_request_id is not None or execution.decision_id is None:
        return []  # a person approved it before it ran, or no decision queued it
    if execution.state not in FINAL_STATES:
        return []
    level = levels_acted_at([execution.pk]).get(execution.pk)
    if level not in REVIEWED_LEVELS:
        return []
    due_at = now + timedelta(hours=settings.WARDEN_REVIEW_DUE_HOURS)
    review, created = PostActionReview.objects.get_or_create(
        execution=execution,
        defaults={
            "autonomy_level": level,
            "outcome": execution.state,
            "opened_at": now,
            "due_at": due_at,
        },
    )
    if not created:
        return []
    outcome = ExecutionState(execution.state).label.lower()
    return [
        event(
            "system",
            "review.opened",
            review,
            f"Warden ran {describe_action(execution)} by itself at L{level} ({outcome}): "
            f"a person reviews it by {utc(due_at)}",
            ticket_id=execution.ticket.ticket_id,
            data={
                "execution": execution.pk,
                "autonomy_level": level,
                "outcome": execution.state,
                "due_at": due_at,
            },
        )
    ]


def acknowledge_review(
    review: PostActionReview, *, user: Any, note: str = "", now: datetime
) -> PostActionReview:
    """`user` has looked at what Warden did and finds it right; the note is optional."""
    _check_reviewer(user)
    text = (note or "").strip()[:NOTE_LIMIT]
    with transaction.atomic():
        review = _locked_open(review)
        _mark(review, ReviewStatus.ACKNOWLEDGED, user, text, now)
        execution = review.execution
        summary = f"{user.get_username()} acknowledged {describe_action(execution)}"
        append_events(
            [
                event(
                    user_actor(user),
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
    review: PostActionReview, *, user: Any, reason: str, now: datetime
) -> PostActionReview:
    """`user` finds what Warden did wrong, and says why: the flag is negative feedback on
    the ticket in their name, counted on its pattern, and may lower the policy or pattern
    to L1 in this transaction (governance.promotions.actions.demote_after_feedback)."""
    _check_reviewer(user)
    why = require_reason(reason)
    with transaction.atomic():
        review = _locked_open(review)
        execution = review.execution
        ticket = execution.ticket
        feedback = Feedback(
            ticket=ticket,
            submitted_by=user,
            feedback_type=FeedbackType.NEGATIVE,
            comment=f"Flagged in the review of execution #{execution.pk} "
            f"({execution.runbook.name}, at L{review.autonomy_level}): {why}",
            what_didnt_work=why,
            created_at=now,
        )
        feedback._history_user = user
        feedback.save()
        patterns.record_feedback(ticket, feedback.feedback_type)
        review.feedback = feedback
        _mark(review, ReviewStatus.FLAGGED, user, why, now)
        events = [
            event(
                user_actor(user),
                "review.flagged",
                review,
                f"{user.get_username()} flagged {describe_action(execution)}: {why}",
                ticket_id=ticket.ticket_id,
                data={
                    "execution": execution.pk,
                    "reason": why,
                    "feedback": feedback.pk,
                    **_timing(review, now),
                },
            ),
            event(
                user_actor(user),
                "feedback.given",
                feedback,
                f"negative feedback on {ticket.ticket_id} (a flagged review)",
                ticket_id=ticket.ticket_id,
                data={"rating": None, "review": review.pk},
            ),
        ]
        demote_after_feedback(feedback, now, events)
        append_events(events)
    return review


def _check_reviewer(user: Any) -> None:
    if user is None:  # a review names the person who made it (the database insists)
        raise PermissionDenied("a review is a person's: sign in to acknowledge or flag it")
    require_permission(user, permissions.REVIEW, "review what Warden did by itself")


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


def _mark(review: PostActionReview, status: str, user: Any, note: str, now: datetime) -> None:
    review.status = status
    review.reviewed_by = user
    review.reviewed_at = now
    review.note = note
    review.save(update_fields=["status", "reviewed_by", "reviewed_at", "note", "feedback"])


def _timing(review: PostActionReview, now: datetime) -> dict[str, Any]:
    return {"due_at": review.due_at, "overdue": review.due_at <= now}
