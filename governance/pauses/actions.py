"""Pause and resume automation for everything, a category or a host.

A pause is checked where an execution starts (dispatch by a worker, claim by
an agent), in the same transaction, so it holds on every worker before the
next action starts.

People's actions: pause_automation (the new Pause row) and resume_pause, each
`(pause, *, actor, reason, now)`. Which pauses hold where, and the pauses that ran out, are
in state.py.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.log import append_events, event, user_actor
from governance.models import Pause, PauseScope


def pause_automation(pause: Pause, *, actor: Any, reason: str, now: datetime) -> Pause:
    """Stop automation in the new `pause`'s scope (everything, its category or its host)
    from `now` until resumed, or until its `ends_at`; `reason` is required and is the
    pause's. Returns the pause, saved and audited."""
    require_permission(actor, permissions.PAUSE, "pause automation")
    pause.reason = require_reason(reason)
    if pause.scope != PauseScope.CATEGORY:
        pause.category = ""
    if pause.scope != PauseScope.HOST:
        pause.host = None
    pause.created_by = actor
    pause.created_at = now
    pause.full_clean()
    with transaction.atomic():
        pause.save()
        append_events(
            [
                event(
                    user_actor(actor),
                    "automation.paused",
                    pause,
                    pause.describe(),
                    data={
                        "scope": pause.scope,
                        "category": pause.category,
                        "ends_at": pause.ends_at,
                    },
                )
            ]
        )
    return pause


def resume_pause(pause: Pause, *, actor: Any, reason: str, now: datetime) -> Pause:
    """End `pause` at `now`, auditing who and why (`reason`, required); the executions it
    held go back in the queue once this commits. Resuming a pause already resumed changes
    nothing.

    A pause is never deleted: ending it is this action, or its end time passing.
    """
    require_permission(actor, permissions.RESUME, "resume automation")
    why = require_reason(reason)
    with transaction.atomic():
        pause = Pause.objects.select_for_update().get(pk=pause.pk)
        if pause.resumed_at is not None:
            return pause
        pause.resumed_at = now
        pause.resumed_by = actor
        pause.save(update_fields=["resumed_at", "resumed_by"])
        append_events(
            [
                event(
                    user_actor(actor),
                    "automation.resumed",
                    pause,
                    f"resumed: {pause.describe()}",
                    data={"note": why},
                )
            ]
        )
    return pause
