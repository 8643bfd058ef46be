"""People's actions on feedback: give it on a ticket, or edit its words.

One verdict per person per ticket: a later one replaces the earlier, which is kept, marked
superseded (feedback.verdicts says what counts). Given feedback is stored, counted on the
ticket's pattern (a person's, not a service's) and audited; feedback that
takes the positive share below the policy's minimum lowers the policy or pattern to L1 in
the same transaction (governance.promotions.demotions). Each action is
`(feedback, *, actor, reason, now)`.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from feedback.models import Feedback
from feedback.verdicts import store_verdict, verdict_event
from governance.audit import permissions
from governance.audit.changes import Change, record_change, require_permission
from governance.audit.log import append_events
from governance.promotions.demotions import demote_after_feedback


def give_feedback(feedback: Feedback, *, actor: Any, reason: str, now: datetime) -> Feedback:
    """Save `actor`'s verdict on a ticket, given at `now`: their first ("feedback.given"),
    or one that replaces their current verdict on that ticket ("feedback.replaced"; the
    earlier row is kept, marked superseded, and its count on the pattern moved). One person
    has one verdict per ticket however often they post. A service account's verdict is
    marked as such and is not counted on the pattern. The feedback is its own reason:
    `reason` is not asked for (pass "")."""
    require_permission(actor, permissions.GIVE_FEEDBACK, "give feedback")
    with transaction.atomic():
        replaced = store_verdict(feedback, actor=actor, now=now)
        events = [verdict_event(feedback, replaced, actor)]
        demote_after_feedback(feedback, now, events)
        append_events(events)
    return feedback


def edit_feedback(feedback: Feedback, *, actor: Any, reason: str, now: datetime) -> Change:
    """Save a person's edit of feedback's words, audited with `reason`, required; its
    verdict was counted once and stays as given (the admin shows feedback_type read-only
    on an edit). The version is dated when it is saved: `now` is not used."""
    return record_change(feedback, actor=actor, reason=reason)
