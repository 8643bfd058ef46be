"""Waking agents' long polls when an action is ready for them, whichever process made it.

An action becomes ready for an agent in a qcluster worker (dispatch) or a web
process (a failed report's rollback, a supervisor's rollback). After that commit,
`announce` names the host. A long poll waits on an asyncio.Event in its web
process (remediation/api/long_poll.py), holding neither a thread nor a database
connection, and one listener per process sets the events:

- with REDIS_URL: announcements go through Redis pub/sub, one subscription per
  process, so a poll wakes within milliseconds of the commit;
- without it (the embedded mode): the listener asks the database which hosts have
  actions ready, one indexed query every WAKE_POLL_SECONDS while anyone waits.

The listener also keeps which hosts have an action ready (the database's answer,
re-read every READY_RESYNC_SECONDS, plus every announcement since), so a poll renewed
by an agent with nothing to do needs no database at all. A lost announcement costs
nothing but time: the next re-read finds the action.
"""

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.utils import timezone

from remediation.choices import ready_for_agents

logger = logging.getLogger(__name__)

CHANNEL = "warden:agent-actions"
WAKE_POLL_SECONDS = 0.2
# How often the listener re-reads which hosts have actions ready, and how old that
# knowledge may be before a poll looks in the database itself.
READY_RESYNC_SECONDS = 10.0
READY_TRUSTED_SECONDS = 2 * READY_RESYNC_SECONDS
# Announcements remembered for polls that were looking when they came (more than long
# enough for one database look); past this many hosts, older ones are forgotten.
ANNOUNCED_SECONDS = 30.0
ANNOUNCED_KEPT = 10_000
RECONNECT_SECONDS = 1.0


@functools.cache
def _publisher() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)


def announce(host_ids: Iterable[int]) -> None:
    """After commit: tell every web process these hosts have an action ready."""
    if not settings.REDIS_URL:
        return  # the embedded mode's listener finds them in the database
    payload = ",".join(str(host_id) for host_id in sorted(set(host_ids)))
    if not payload:
        return
    try:
        _publisher().publish(CHANNEL, payload)
    except redis.RedisError:  # the poll finds the action in the database when it ends
        logger.warning("could not announce actions for hosts %s", payload, exc_info=True)


def in_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    """An async version of a database function: runs in the loop's shared thread pool, not a
    thread kept per request, and gives its connection back to the pool at once."""

    def closing(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return sync_to_async(closing, thread_sensitive=False)


def hosts_with_ready_actions() -> set[int]:
    from remediation.models import Execution

    return set(
        Execution.objects.filter(ready_for_agents(timezone.now()), handoff_target__isnull=True)
        .values_list("host_id", flat=True)
        .distinct()
    )


class Waiters:
    """The long polls waiting in this process, by host, and the one listener that wakes them."""

    def __init__(self) -> None:
        self.events: dict[int, set[asyncio.Event]] = defaultdict(set)
        # When each host was last announced (loop time), so a poll that registers just
        # after an announcement (it was looking in the database then) still hears it.
        self.announced: dict[int, float] = {}
        # Hosts with an action ready as of `ready_as_of` (loop time; None: not known).
        self.ready: set[int] = set()
        self.ready_as_of: float | None = None
        self.listener: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def waiting(self, host_id: int, since: float) -> Iterator[asyncio.Event]:
        """An event set when `host_id` may have an action: already set if it was announced
        after `since` (loop time), when the caller started looking in the database."""
        self._ensure_listener()
        event = asyncio.Event()
        if self.announced.get(host_id, float("-inf")) >= since:
            event.set()
        self.events[host_id].add(event)
        try:
            yield event
        finally:
            self.events[host_id].discard(event)
            if not self.events[host_id]:
                del self.events[host_id]

    @property
    def count(self) -> int:
        return sum(len(events) for events in self.events.values())

    def nothing_ready(self, host_id: int) -> bool:
        """True when this process knows, recently enough, that `host_id` has no action ready."""
        self._ensure_listener()
        as_of = self.ready_as_of
        now = asyncio.get_running_loop().time()
        return (
            as_of is not None and now - as_of < READY_TRUSTED_SECONDS and host_id not in self.ready
        )

    def claimed(self, host_id: int) -> None:
        """The host's ready actions were just taken (or there were none after all)."""
        self.ready.discard(host_id)

    async def resync(self) -> None:
        """Re-read which hosts have actions ready, keeping what was announced meanwhile."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        ready = await in_thread(hosts_with_ready_actions)()
        since = {host_id for host_id, at in self.announced.items() if at >= started}
        found = ready - self.ready  # ready, but never announced here (a message was lost)
        self.ready = ready | since
        self.ready_as_of = started
        self.wake(found & set(self.events))

    def wake(self, host_ids: Iterable[int]) -> None:
        now = asyncio.get_running_loop().time()
        for host_id in host_ids:
            self.announced[host_id] = now
            self.ready.add(host_id)
            for event in self.events.get(host_id, ()):
                event.set()
        if len(self.announced) > ANNOUNCED_KEPT:
            self.announced = {
                host_id: at
                for host_id, at in self.announced.items()
                if at > now - ANNOUNCED_SECONDS
            }

    def _ensure_listener(self) -> None:
        loop = asyncio.get_running_loop()
        # One listener per event loop: a server has one, a test suite starts several.
        if self.listener is None or self.listener.done() or self.loop is not loop:
            listen = self._listen_redis if settings.REDIS_URL else self._watch_database
            self.loop, self.listener = loop, loop.create_task(listen())

    async def _listen_redis(self) -> None:
        while True:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
            resyncing = None
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    # Subscribed first, so nothing announced from now on is missed.
                    resyncing = asyncio.create_task(self._resync_every(READY_RESYNC_SECONDS))
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.wake(int(part) for part in message["data"].split(b","))
            except (redis.RedisError, OSError):
                logger.warning("agent wake-ups: Redis unavailable, retrying", exc_info=True)
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                self.ready_as_of = None  # unknown while not listening
                if resyncing is not None:
                    resyncing.cancel()
                await client.aclose()

    async def _resync_every(self, seconds: float) -> None:
        while True:
            try:
                await self.resync()
            except Exception:  # the loop outlives any failure; polls look themselves
                logger.warning("agent wake-ups: cannot read ready actions", exc_info=True)
            await asyncio.sleep(seconds)

    async def _watch_database(self) -> None:
        while True:
            await asyncio.sleep(WAKE_POLL_SECONDS)
            if not self.events:
                continue
            try:
                await self.resync()
            except Exception:  # the loop outlives any failure: the next tick tries again
                logger.warning("agent wake-ups: cannot read ready actions", exc_info=True)
                continue
            self.wake(self.ready & set(self.events))


waiters = Waiters()
