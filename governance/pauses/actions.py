"""Pause and resume automation for everything, a category or a host.

A pause is checked where an execution starts (dispatch by a worker, claim by
an agent), in the same transaction, so it holds on every worker before the
next action starts.

People's actions: pause_automation (the new Pause row) and resume_pause, each
`(pause, *, actor, reason, now)`. The flow reads active_pauses and pauses_for, and the
sweeper records the pauses that ran out (record_lapsed_pauses).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from governance.audit.changes import require_permission, require_reason
from governance.audit.log import append_events, event, user_actor
from governance.models import Pause, PauseScope


def active_pauses(now: datetime) -> QuerySet[Pause]:
    """Pauses holding automation at `now`: not resumed, and not past their end time."""
    return (
        Pause.objects.filter(resumed_at__isnull=True)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .select_related("host", "created_by")
    )


def is_active(pause: Pause, now: datetime) -> bool:
    """The row-by-row form of active_pauses(): a pause lapses by itself at ends_at."""
    return pause.resumed_at is None and (pause.ends_at is None or pause.ends_at > now)


def pauses_applying(pauses: Iterable[Pause], host_id: int, category: str) -> list[Pause]:
    """The pauses among `pauses` that hold automation for this host and category."""
    return [
        pause
        for pause in pauses
        if pause.scope == PauseScope.ALL
        or (pause.scope == PauseScope.CATEGORY and pause.category == category)
        or (pause.scope == PauseScope.HOST and pause.host_id == host_id)
    ]


def pauses_for(host_id: int, category: str, now: datetime) -> list[Pause]:
    return pauses_applying(active_pauses(now), host_id, category)


def pause_automation(pause: Pause, *, actor: Any, reason: str, now: datetime) -> Pause:
    """Stop automation in the new `pause`'s scope (everything, its category or its host)
    from `now` until resumed, or until its `ends_at`; `reason` is required and is the
    pause's. Returns the pause, saved and audited."""
    require_permission(actor, "governance.add_pause", "pause automation")
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
    require_permission(actor, "governance.change_pause", "resume automation")
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


def record_lapsed_pauses(now: datetime) -> int:
    """Audit the pauses whose end time has passed (they stopped holding then, by
    themselves); the sweeper calls this every minute. Returns how many."""
    with transaction.atomic():
        lapsed = list(
            Pause.objects.select_for_update(of=("self",))
            .select_related("host", "created_by")
            .filter(resumed_at__isnull=True, lapsed_at__isnull=True, ends_at__lte=now)
        )
        for pause in lapsed:
            pause.lapsed_at = now
            pause.save(update_fields=["lapsed_at"])
        append_events(
            [
                event(
                    "system",
                    "automation.pause_lapsed",
                    pause,
                    f"lapsed at {pause.ends_at:%Y-%m-%d %H:%M %Z}: {pause.describe()}",
                    data={"ends_at": pause.ends_at},
                )
                for pause in lapsed
            ]
        )
    return len(lapsed)
