"""Pause and resume automation for everything, a category or a host.

A pause is checked where an execution starts (dispatch by a worker, claim by
an agent), in the same transaction, so it holds on every worker before the
next action starts.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django_q.tasks import async_task

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


def pause_automation(
    *,
    scope: str,
    reason: str,
    user: Any,
    now: datetime,
    category: str = "",
    host: Any = None,
    ends_at: datetime | None = None,
) -> Pause:
    """Stop automation in `scope` until resumed (or until `ends_at`)."""
    require_permission(user, "governance.add_pause", "pause automation")
    pause = Pause(
        scope=scope,
        category=category if scope == PauseScope.CATEGORY else "",
        host=host if scope == PauseScope.HOST else None,
        reason=reason,
        created_by=user,
        created_at=now,
        ends_at=ends_at,
    )
    pause.full_clean()
    with transaction.atomic():
        pause.save()
        append_events(
            [
                event(
                    user_actor(user),
                    "automation.paused",
                    pause,
                    pause.describe(),
                    data={"scope": scope, "category": pause.category, "ends_at": ends_at},
                )
            ]
        )
    return pause


def resume_automation(pause: Pause, *, user: Any, now: datetime, note: str) -> None:
    """End a pause, auditing who and why; a task puts the executions it held back in the queue.

    A pause is never deleted: ending it is this verb, or its end time passing.
    """
    require_permission(user, "governance.change_pause", "resume automation")
    note = require_reason(note)
    with transaction.atomic():
        pause = Pause.objects.select_for_update().get(pk=pause.pk)
        if pause.resumed_at is not None:
            return
        pause.resumed_at = now
        pause.resumed_by = user
        pause.save(update_fields=["resumed_at", "resumed_by"])
        append_events(
            [
                event(
                    user_actor(user),
                    "automation.resumed",
                    pause,
                    f"resumed: {pause.describe()}",
                    data={"note": note},
                )
            ]
        )
        transaction.on_commit(
            lambda: async_task("remediation.tasks.release_held_executions"), robust=True
        )


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
        if lapsed:
            transaction.on_commit(
                lambda: async_task("remediation.tasks.release_held_executions"), robust=True
            )
    return len(lapsed)
