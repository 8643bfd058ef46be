"""Which pauses hold automation, and where: read by the decisions and at every start of an
execution; and the pauses that ran out, recorded by the sweeper.
"""

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet

from governance.audit.log import append_events, event
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
