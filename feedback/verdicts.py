"""A person gives feedback on a ticket: stored, counted on the ticket's pattern, audited."""

from typing import Any

from django.db import transaction

from feedback import patterns
from feedback.models import Feedback
from governance.audit import append_events, event, user_actor


def give_feedback(feedback: Feedback, *, user: Any) -> Feedback:
    """Save a new piece of feedback as `user`'s; its verdict counts on the pattern once."""
    feedback.submitted_by = user
    with transaction.atomic():
        feedback.save()
        patterns.record_feedback(feedback.ticket, feedback.feedback_type)
        append_events(
            [
                event(
                    user_actor(user),
                    "feedback.given",
                    feedback,
                    f"{feedback.feedback_type} feedback on {feedback.ticket.ticket_id}",
                    ticket_id=feedback.ticket.ticket_id,
                    data={"rating": feedback.rating},
                )
            ]
        )
    return feedback
