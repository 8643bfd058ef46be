"""Live events for the console: the audit log is the outbox.

With REDIS_URL the writer sends each committed event to a channels-redis group,
which reaches every web process. Without it, the in-memory layer only reaches
its own process, so one relay per web process tails the audit log by sequence
(one indexed query per tick, not one per socket) and fans events out.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from governance.audit import permissions
from governance.audit.log import event_record
from governance.models import AuditEvent

logger = logging.getLogger(__name__)

CONSOLE_GROUP = "console"
RELAY_INTERVAL_SECONDS = 0.3


def may_watch(user: Any, session: Any = None) -> bool:
    """Whether `user` may watch the console now: read again from the database (not the
    user the socket opened with), active, staff, allowed to read the whole audit trail,
    and still signed in with the password the session was opened with."""
    if user is None or not user.is_authenticated:
        return False
    stored = get_user_model().objects.filter(pk=user.pk).first()
    if stored is None or not (stored.is_active and stored.is_staff):
        return False
    if not (
        stored.has_perm(permissions.VIEW_AUDIT) and stored.has_perm(permissions.VIEW_WHOLE_AUDIT)
    ):
        return False
    signed_with = session.get(HASH_SESSION_KEY) if session is not None else None
    return signed_with is None or constant_time_compare(signed_with, stored.get_session_auth_hash())


def serialize_event(row: AuditEvent) -> dict[str, Any]:
    return event_record(row)


def publish_events(rows: Sequence[AuditEvent]) -> None:
    """After commit: hand the events to every web process (Redis only; see the module doc)."""
    if not settings.REDIS_URL:
        return
    layer = get_channel_layer()
    messages = [{"type": "audit.event", "event": serialize_event(row)} for row in rows]

    async def send_all() -> None:
        for message in messages:
            await layer.group_send(CONSOLE_GROUP, message)

    try:
        # One trip into the event loop per transaction: each async_to_sync call costs a
        # thread, a loop and a Redis connection (about 4 ms, bench_console_latency).
        async_to_sync(send_all)()
    except Exception:  # the event is committed; a reconnecting console catches up by sequence
        logger.exception("could not publish audit events to the console")


def events_after(sequence: int, limit: int = 500) -> list[dict[str, Any]]:
    rows = AuditEvent.objects.filter(sequence__gt=sequence).order_by("sequence")[:limit]
    return [serialize_event(row) for row in rows]


def latest_sequence() -> int:
    last = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    return last or 0


class _Relay:
    """Tails the audit log for this process's sockets when there is no Redis."""

    def __init__(self) -> None:
        self.task: asyncio.Task | None = None

    def ensure_running(self) -> None:
        if settings.REDIS_URL or (self.task and not self.task.done()):
            return
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        layer = get_channel_layer()
        last = await database_sync_to_async(latest_sequence)()
        while True:
            await asyncio.sleep(RELAY_INTERVAL_SECONDS)
            try:
                events = await database_sync_to_async(events_after)(last)
            except Exception:  # whatever failed, the relay must outlive it: it tries next tick
                logger.exception("console relay could not read the audit log")
                continue
            for item in events:
                await layer.group_send(CONSOLE_GROUP, {"type": "audit.event", "event": item})
                last = item["sequence"]


relay = _Relay()
