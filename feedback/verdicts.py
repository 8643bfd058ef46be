"""Which feedback counts, and how much: people, not posts.

One verdict per person per ticket: a later one replaces the earlier (feedback.actions),
and only the current one counts. Feedback from a service's account (an integrator's
token, any account in a service role) is marked as such and weighs what the category's
policy says (Policy.service_feedback_weight, 0 by default): it informs, and earns
autonomy only if the policy lets it.
"""

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from feedback import patterns
from feedback.models import Feedback, Pattern
from governance.audit.log import PendingEvent, event, user_actor
from governance.audit.permissions import is_service_account

# The pattern's count of each verdict (feedback.patterns.record_feedback counts them up).
PATTERN_COUNTS = {"positive": "positive_count", "negative": "negative_count"}


def store_verdict(feedback: Feedback, *, actor: Any, now: datetime) -> Feedback | None:
    """Save `feedback` as `actor`'s verdict given at `now`, in the caller's transaction;
    returns the verdict of theirs it replaced, if any. Marks a service's feedback as such,
    and counts the verdict on the ticket's pattern (a person's only)."""
    feedback.submitted_by = actor
    feedback.created_at = now
    feedback.from_service = is_service_account(actor)
    feedback._history_user = actor  # history names the person outside a request too
    replaced = _free_current_place(feedback, now)
    feedback.save()
    if replaced is not None:
        _mark_replaced(replaced, feedback, now, actor)
    _count_on_pattern(feedback, replaced)
    return replaced


def _free_current_place(feedback: Feedback, now: datetime) -> Feedback | None:
    """Free the one current place of `feedback`'s giver on its ticket, if they hold it: the
    verdict there is locked, marked superseded at `now` and returned (linked to its
    replacement once that is saved). A row with no giver replaces nothing."""
    if feedback.submitted_by_id is None:
        return None
    replaced = (
        Feedback.objects.select_for_update()
        .filter(
            ticket=feedback.ticket_id,
            submitted_by=feedback.submitted_by_id,
            superseded_at__isnull=True,
        )
        .first()
    )
    if replaced is not None:
        # Bookkeeping before the new row takes the one current place: the full version,
        # with what replaced it, is saved (with history) by _mark_replaced.
        Feedback.objects.filter(pk=replaced.pk).update(superseded_at=now)
    return replaced


def _mark_replaced(replaced: Feedback, by: Feedback, now: datetime, actor: Any) -> None:
    replaced.superseded_at = now
    replaced.superseded_by = by
    replaced._history_user = actor
    replaced.save(update_fields=["superseded_at", "superseded_by"])


def _count_on_pattern(feedback: Feedback, replaced: Feedback | None) -> None:
    """The pattern counts people's current verdicts: a replaced one is taken back, and a
    service's is not counted (it earns no pattern autonomy)."""
    if replaced is not None and not replaced.from_service:
        _uncount_on_pattern(feedback.ticket, replaced.feedback_type)
    if not feedback.from_service:
        patterns.record_feedback(feedback.ticket, feedback.feedback_type)


def _uncount_on_pattern(ticket: Any, feedback_type: str) -> None:
    if ticket.pattern_id is None:
        return
    pattern = Pattern.objects.select_for_update().get(pk=ticket.pattern_id)
    field = PATTERN_COUNTS.get(feedback_type, "neutral_count")
    setattr(pattern, field, max(getattr(pattern, field) - 1, 0))
    pattern.eligible_for_auto_remediation = patterns.is_eligible(pattern)
    pattern.save()


def verdict_event(
    feedback: Feedback, replaced: Feedback | None, actor: Any, **data: Any
) -> PendingEvent:
    """The audit event of a stored verdict: "feedback.given", or "feedback.replaced"
    naming the verdict it replaced; `data` joins the event's."""
    ticket_id = feedback.ticket.ticket_id
    by = "a service's " if feedback.from_service else ""
    data = {"rating": feedback.rating, "from_service": feedback.from_service, **data}
    if replaced is None:
        return event(
            user_actor(actor),
            "feedback.given",
            feedback,
            f"{by}{feedback.feedback_type} feedback on {ticket_id}",
            ticket_id=ticket_id,
            data=data,
        )
    return event(
        user_actor(actor),
        "feedback.replaced",
        feedback,
        f"{by}{feedback.feedback_type} feedback on {ticket_id} replaced the same giver's "
        f"{replaced.feedback_type} feedback #{replaced.pk}",
        ticket_id=ticket_id,
        data={
            **data,
            "replaced": replaced.pk,
            "replaced_feedback_type": replaced.feedback_type,
            "replaced_rating": replaced.rating,
        },
    )


def current_at(feedback: QuerySet[Feedback], now: datetime) -> QuerySet[Feedback]:
    """The verdicts among `feedback` that counted at `now`: given by then, and not yet
    replaced by then (a simulation replaying the past sees what stood at the time)."""
    return feedback.filter(created_at__lte=now).filter(
        Q(superseded_at__isnull=True) | Q(superseded_at__gt=now)
    )


def weight_of(from_service: bool, service_weight: float) -> float:
    """How much one current verdict weighs: a person's 1, a service's the policy's weight."""
    return min(max(service_weight, 0.0), 1.0) if from_service else 1.0
