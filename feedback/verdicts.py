"""A person gives feedback on a ticket: stored, counted on the ticket's pattern, audited;
feedback that takes the positive share below the policy's minimum lowers the policy or
pattern to L1 in the same transaction (governance.promotions.actions)."""

from typing import Any

from django.db import transaction

from feedback import patterns
from feedback.models import Feedback
from governance.audit.changes import Change, require_permission, save_governed
from governance.audit.log import append_events, event, user_actor
from governance.promotions.actions import demote_after_feedback


def give_feedback(feedback: Feedback, *, user: Any) -> Feedback:
    """Save a new piece of feedback as `user`'s; its verdict counts on the pattern once."""
    require_permission(user, "feedback.add_feedback", "give feedback")
    feedback.submitted_by = user
    with transaction.atomic():
        feedback.save()
        patterns.record_feedback(feedback.ticket, feedback.feedback_type)
        events = [
            event(
                user_actor(user),
                "feedback.given",
                feedback,
                f"{feedback.feedback_type} feedback on {feedback.ticket.ticket_id}",
                ticket_id=feedback.ticket.ticket_id,
                data={"rating": feedback.rating},
            )
        ]
        demote_after_feedback(feedback, feedback.created_at, events)
        append_events(events)
    return feedback


def edit_feedback(feedback: Feedback, *, user: Any, reason: str | None) -> Change:
    """Save a person's edit of feedback's words, audited; its verdict was counted once and
    stays as given (the admin shows feedback_type read-only on an edit)."""
    return save_governed(feedback, user=user, reason=reason)
