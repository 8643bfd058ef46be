"""Live events for the console: the audit log is the outbox.

With REDIS_URL the writer sends each committed event to a channels-redis group,
which reaches every web process. Without it, the in-memory layer only reaches
its own process, so one relay per web process tails the audit log by sequence
(one indexed query per tick, not one per socket) and fans events out.
"""

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

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


class _Publisher:
    """Hands committed events to the console group from one event loop per process.

    A request thread only appends its transaction's events to a list (no thread, loop or
    Redis connection of its own: about 4 ms each before); a daemon thread with a lasting
    loop sends whatever has gathered as one message, at once when it was idle, else at
    most every MIN_INTERVAL, so a storm's events go out in a few messages, never one per
    event (channels-redis drops what is sent to a socket that has 100 messages waiting,
    its default capacity).
    """

    MAX_BATCH = 500  # events per message; a browser shows at most 300
    # Under load, at most one message per process this often (none is held when idle): a
    # storm's commits come faster than a socket checks its user and forwards a message.
    MIN_INTERVAL = 0.05

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []
        self.wake: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = 0

    def publish(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            if self.pid != os.getpid():  # first use in this process (or a forked copy)
                self._start()
            self.pending += events
            first = len(self.pending) == len(events)
        if first:  # the sender is idle, or about to look again
            assert self.loop is not None and self.wake is not None
            self.loop.call_soon_threadsafe(self.wake.set)

    def _start(self) -> None:
        self.pid = os.getpid()
        self.pending = []
        self.loop = asyncio.new_event_loop()
        self.wake = asyncio.Event()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            self.loop.run_until_complete(self._send_forever())

        threading.Thread(target=run, name="console-publisher", daemon=True).start()
        started.wait()

    async def _send_forever(self) -> None:
        assert self.wake is not None and self.loop is not None
        last = -self.MIN_INTERVAL
        while True:
            await self.wake.wait()
            pause = last + self.MIN_INTERVAL - self.loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            last = self.loop.time()
            with self.lock:
                batch, self.pending = self.pending[: self.MAX_BATCH], self.pending[self.MAX_BATCH :]
                if not self.pending:
                    self.wake.clear()
            if not batch:
                continue
            try:
                layer = get_channel_layer()  # read each time: tests change the settings
                await layer.group_send(CONSOLE_GROUP, {"type": "audit.events", "events": batch})
            except Exception:  # committed: a reconnecting console catches up by sequence
                logger.exception("could not publish %s audit events to the console", len(batch))


_publisher = _Publisher()


def publish_events(rows: Sequence[AuditEvent]) -> None:
    """After commit: hand the events to every web process (Redis only; see the module doc)."""
    if settings.REDIS_URL:
        _publisher.publish([serialize_event(row) for row in rows])


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
            if events:
                await layer.group_send(CONSOLE_GROUP, {"type": "audit.events", "events": events})
                last = events[-1]["sequence"]


relay = _Relay()
