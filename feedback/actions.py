"""People's actions on feedback: give it on a ticket, or edit its words.

Given feedback is stored, counted on the ticket's pattern and audited; feedback that
takes the positive share below the policy's minimum lowers the policy or pattern to L1 in
the same transaction (governance.promotions.demotions). Each action is
`(feedback, *, actor, reason, now)`.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from feedback import patterns
from feedback.models import Feedback
from governance.audit import permissions
from governance.audit.changes import Change, record_change, require_permission
from governance.audit.log import append_events, event, user_actor
from governance.promotions.demotions import demote_after_feedback


def give_feedback(feedback: Feedback, *, actor: Any, reason: str, now: datetime) -> Feedback:
    """Save a new piece of feedback as `actor`'s, given at `now`; its verdict counts on the
    pattern once. The feedback is its own reason: `reason` is not asked for (pass "")."""
    require_permission(actor, permissions.GIVE_FEEDBACK, "give feedback")
    feedback.submitted_by = actor
    feedback.created_at = now
    feedback._history_user = actor  # history names the person outside a request too
    with transaction.atomic():
        feedback.save()
        patterns.record_feedback(feedback.ticket, feedback.feedback_type)
        events = [
            event(
                user_actor(actor),
                "feedback.given",
                feedback,
                f"{feedback.feedback_type} feedback on {feedback.ticket.ticket_id}",
                ticket_id=feedback.ticket.ticket_id,
                data={"rating": feedback.rating},
            )
        ]
        demote_after_feedback(feedback, now, events)
        append_events(events)
    return feedback


def edit_feedback(feedback: Feedback, *, actor: Any, reason: str, now: datetime) -> Change:
    """Save a person's edit of feedback's words, audited with `reason`, required; its
    verdict was counted once and stays as given (the admin shows feedback_type read-only
    on an edit). The version is dated when it is saved: `now` is not used."""
    return record_change(feedback, actor=actor, reason=reason)
