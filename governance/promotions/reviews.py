"""Post-action reviews: people look at what Warden did by itself (PHASE-65's oversight).

At L2 and L3 Warden acts without asking; so each automatic execution that ends (verified,
failed, rolled back or not) gets one review, and people are told: a notice each at L2, one
digest at L3 (governance.notices.batches). Within WARDEN_REVIEW_DUE_HOURS a person who may
review (feedback.review_postactionreview: supervisors and approvers) acknowledges it, or
flags it with a reason. A flag is negative feedback on the ticket, attributed to that person
and counted on its pattern like any other (governance.promotions.demotions may then lower
the policy or pattern to L1 at once). A review past its due time shows as overdue on the
console and the admin's home page until someone makes it; a review is made once and never
deleted.

    remediation.executions.ending, where an automatic execution ends, in its transaction:
        events += open_review(execution, now)
    people's actions on a review (governance.promotions.actions):
        acknowledge_review(review, actor=..., reason=..., now=...)
        flag_review(review, actor=..., reason=..., now=...)
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from feedback.models import FINAL_OUTCOMES, PostActionReview, ReviewStatus
from governance.audit.log import PendingEvent, event
from governance.choices import AutonomyLevel
from governance.notices.plans import levels_acted_at
from remediation.choices import ExecutionState
from remediation.models import Execution

REVIEWED_LEVELS = frozenset({AutonomyLevel.L2_CONDITIONAL, AutonomyLevel.L3_BOUNDED})
FINAL_STATES = frozenset(value for value, _ in FINAL_OUTCOMES)
NOTE_LIMIT = 2000


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
