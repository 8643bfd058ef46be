"""One host's agent: readings taken in one thread, posted in another, Warden's actions
taken in a third.

The readings thread takes a reading every `interval` seconds into the spool, whatever
the server is doing: a post that hangs or a server that is away delays no reading. The
posting thread posts what the spool holds every `post_every` seconds (oldest first, in
batches the server takes), removing readings only once the server has acknowledged them
and retrying with back-off, so a reading is sent again until it is acknowledged (the
server stores a resent reading once). The actions thread sends the allow-list (PUT
/api/v1/agent/allowlist), then holds a long poll on GET /api/v1/agent/actions; for each
order it says it is starting (POST .../started) and runs it only once Warden answers that
it may, then reports the result with the order's fencing token; a result stays spooled
until the server has it. The first post and the first poll wait a random part of the
time between posts, so a fleet restarting together does not arrive at once.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from warden_agent import __version__
from warden_agent.argv import allowlist_digest
from warden_agent.backoff import Backoff, next_tick
from warden_agent.client import ApiError, Client, Misconfigured, Unavailable
from warden_agent.executor import Executor, Order, Outcome, not_started_body, report_body
from warden_agent.metrics import MetricsSource, summarize
from warden_agent.spool import DEFAULT_LIMIT, ReadingSpool, ResultSpool

log = logging.getLogger("warden.agent")

ALLOWLIST_PATH = "/api/v1/agent/allowlist"
# Readings per request: under the server's batch limit (WARDEN_MAX_BATCH, 1000).
BATCH_SIZE = 500
# How long one long poll waits for an action; the server allows up to its
# WARDEN_AGENT_POLL_MAX_SECONDS (60 by default), proxies commonly cut idle requests at 60.
POLL_WAIT = 50.0
# An action is started only if this much of its lease is left, to run it and report.
LEASE_MARGIN_SECONDS = 5.0
# The first post and poll wait up to min(the time between posts, this) seconds: a fleet
# (re)starting together arrives at the rate it runs at, not all in its first second.
MAX_START_JITTER = 60.0
INTERRUPTED = "the agent stopped while this action ran (a restart or a crash); outcome unknown"
NEVER_STARTED = "the agent stopped before it started this action (a restart or a crash)"


class Agent:
    """One host's agent: posts readings, runs and reports actions, until stopped."""

    def __init__(
        self,
        url: str,
        key: str,
        host: str,
        metrics: MetricsSource,
        executor: Executor,
        *,
        interval: float = 5.0,
        post_every: float | None = None,
        poll_wait: float = POLL_WAIT,
        timeout: float = 10.0,
        backoff_start: float = 1.0,
        backoff_max: float = 30.0,
        spool_dir: str | Path | None = None,
        spool_limit: int = DEFAULT_LIMIT,
        batch_size: int = BATCH_SIZE,
        start_jitter: float | None = None,
    ) -> None:
        self.client = Client(url, key, timeout)
        self.url = self.client.url
        self.host = host
        self.metrics = metrics
        self.executor = executor
        self.interval = interval
        self.post_every = post_every or interval
        self.poll_wait = poll_wait
        self.timeout = timeout
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        # Upper bound of the random wait before the first post and the first poll.
        self.start_jitter = (
            min(self.post_every, MAX_START_JITTER) if start_jitter is None else start_jitter
        )
        self.readings = ReadingSpool(spool_dir, spool_limit)
        # Results the server has not acknowledged: an action runs once, its report may
        # need several tries, and across a restart.
        self.results = ResultSpool(spool_dir)
        self._recover_interrupted()
        # Orders already taken, so a repeated delivery cannot run one twice.
        self.done: deque[str] = deque((key for key, _ in self.results.items()), maxlen=200)
        self.error: str | None = None  # why the agent stopped by itself (401/403)
        self.halted = threading.Event()  # set with `error`: every thread stops
        self.busy = threading.Lock()  # held while an action runs and is reported
        self.posted = 0
        self.dropped = 0  # readings dropped from a full spool in this outage
        self._dropping = threading.Lock()  # `dropped`: counted by one thread, logged by another
        self._warned: set[str] = set()  # problems already logged in this outage

    # --- the two threads ---------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set or the server rejects the key.

        Readings are taken in this thread, posted in another and actions taken in a third;
        on stop an action already running finishes and is reported, a poll still waiting
        and a post still hanging are left (what it carried stays spooled).
        """
        workers = [
            threading.Thread(target=work, args=(stop,), name=f"{self.host}-{name}", daemon=True)
            for name, work in (("posts", self.post_readings), ("actions", self.take_actions))
        ]
        for worker in workers:
            worker.start()
        try:
            self.take_readings(stop)
        finally:
            for worker in workers:
                worker.join(timeout=1.0)
            with self.busy:  # wait for a running action, not for a waiting poll
                pass
            self.readings.close()
            self._log_dropped()

    def take_readings(self, stop: threading.Event) -> None:
        """Take a reading every `interval`, whatever the server is doing."""
        next_reading = time.monotonic()
        while not (stop.is_set() or self.halted.is_set()):
            now = time.monotonic()
            if now >= next_reading:
                self.collect()
                next_reading = next_tick(next_reading, self.interval, now)
            stop.wait(max(next_reading - time.monotonic(), 0.0))

    def post_readings(self, stop: threading.Event) -> None:
        """Post the spool every `post_every`; while the server is away, back off and keep
        everything for the next try."""
        backoff = Backoff(self.backoff_start, self.backoff_max)
        next_post = time.monotonic() + random.uniform(0.0, self.start_jitter)
        while not (stop.is_set() or self.halted.is_set()):
            now = time.monotonic()
            if now >= next_post and now >= backoff.retry_at:
                next_post = next_tick(next_post, self.post_every, now)
                try:
                    self.flush(stop)
                except Unavailable as exc:
                    self.warn(backoff.failed(exc))
                except Misconfigured as exc:
                    self.halt(exc)
                else:
                    if backoff.reset():
                        log.info("%s: server reachable again", self.host)
                        self._warned.clear()
                    self._log_dropped()
            stop.wait(max(max(next_post, backoff.retry_at) - time.monotonic(), 0.0))

    def take_actions(self, stop: threading.Event) -> None:
        """Send the allow-list, then long-poll for actions, run each and report it at once."""
        backoff = Backoff(self.backoff_start, self.backoff_max)
        stop.wait(random.uniform(0.0, self.start_jitter))
        allowlist_sent = False
        while not (stop.is_set() or self.halted.is_set()):
            if time.monotonic() < backoff.retry_at:
                stop.wait(backoff.retry_at - time.monotonic())
                continue
            try:
                if not allowlist_sent:
                    self.send_allowlist()
                    allowlist_sent = True
                self.report_pending()
                actions = self.poll(self.poll_wait)
                received = time.monotonic()
                for action in actions:
                    if stop.is_set():
                        break  # not started: the server offers it again
                    if not self.within_lease(action, received):
                        continue
                    with self.busy:
                        self.handle(action, received, stop)
                        self.report_pending()
                backoff.reset()
            except Unavailable as exc:
                self.warn(backoff.failed(exc))
            except Misconfigured as exc:
                self.halt(exc)

    def halt(self, exc: Misconfigured) -> None:
        if not self.halted.is_set():
            self.error = str(exc)
            log.error("%s: %s; stopping this agent", self.host, exc)
        self.halted.set()

    # --- readings ----------------------------------------------------------------------

    def collect(self) -> None:
        """Take a reading into the spool; the oldest go when it is full."""
        try:
            sample = self.metrics.read()
        except Exception as exc:  # a broken sensor must not stop the agent running actions
            log.warning("%s: cannot take a reading: %s: %s", self.host, type(exc).__name__, exc)
            return
        dropped = self.readings.append(sample)
        if not dropped:
            return
        with self._dropping:
            if not self.dropped:
                log.warning(
                    "%s: spool full (%d readings): dropping the oldest until the server is back",
                    self.host,
                    self.readings.limit,
                )
            self.dropped += dropped

    def flush(self, stop: threading.Event | None = None) -> None:
        """Post the spooled readings, oldest first, one sample alone or in batches;
        each batch leaves the spool once the server has answered it (readings taken
        meanwhile, or dropped from a full spool, change nothing of that)."""
        while not (stop and stop.is_set()):
            last, batch = self.readings.oldest_batch(self.batch_size)
            if not batch:
                return
            self.post(batch)
            self.readings.remove_through(last)

    def post(self, batch: list[dict[str, Any]]) -> None:
        try:
            body = self.client.call(
                "POST", "/api/v1/metrics", batch[0] if len(batch) == 1 else batch
            )
        except ApiError as exc:
            # A refused batch would be refused again: drop it, or it blocks all later ones.
            log.error("%s: server refused %d sample(s), dropped: %s", self.host, len(batch), exc)
            return
        results = body.get("results", []) if isinstance(body, dict) else []
        routine = len(batch) == 1 and all(
            r.get("decision") == "NO_ACTION" and not r.get("ticket_id") for r in results
        )
        # Healthy samples every few seconds would drown the rest; -v shows them.
        level = logging.DEBUG if routine and self.posted else logging.INFO
        log.log(level, "%s: posted %d sample(s): %s", self.host, len(batch), summarize(results))
        self.posted += len(batch)

    def _log_dropped(self) -> None:
        with self._dropping:
            dropped, self.dropped = self.dropped, 0
        if dropped:
            log.warning(
                "%s: dropped the %d oldest reading(s) while the server was unreachable "
                "(the spool keeps at most %d)",
                self.host,
                dropped,
                self.readings.limit,
            )

    # --- actions -----------------------------------------------------------------------

    def send_allowlist(self) -> None:
        """Tell the server what this agent may run; raises Unavailable or Misconfigured."""
        entries = self.executor.allowlist
        digest = allowlist_digest(entries)
        payload = {"entries": entries, "digest": digest, "agent_version": __version__}
        try:
            body = self.client.call("PUT", ALLOWLIST_PATH, payload)
        except ApiError as exc:
            if exc.status in (404, 405):
                log.warning(
                    "%s: this server does not take allow-lists (HTTP %d: a Warden older than "
                    "this agent); going on without sending it",
                    self.host,
                    exc.status,
                )
            else:
                log.error("%s: server refused the allow-list: %s", self.host, exc)
            return
        held = body.get("digest") if isinstance(body, dict) else None
        if held != digest:
            log.warning(
                "%s: the server holds allow-list digest %s, not this agent's %s",
                self.host,
                held,
                digest,
            )
            return
        log.info("%s: allow-list sent: %d action(s), digest %s", self.host, len(entries), digest)

    def poll(self, wait: float) -> list[dict[str, Any]]:
        """This host's actions, waiting up to `wait` seconds for one."""
        query = urllib.parse.urlencode({"wait": f"{wait:.2f}"})
        try:
            body = self.client.call(
                "GET", f"/api/v1/agent/actions?{query}", timeout=wait + self.timeout
            )
        except ApiError as exc:  # e.g. a wait this server does not allow: back off, not spin
            raise Unavailable(f"cannot poll for actions: {exc}") from exc
        actions = body.get("actions") if isinstance(body, dict) else None
        return [a for a in actions if isinstance(a, dict)] if isinstance(actions, list) else []

    def within_lease(self, action: Mapping[str, Any], received: float) -> bool:
        """Never start an action past its lease: the server may already have given up on
        it (and told a person so). Measured on this host's own clock from receipt, so a
        skewed clock cannot stretch it."""
        lease = action.get("lease_seconds")
        if not isinstance(lease, (int, float)) or isinstance(lease, bool):
            return True  # a server that sends no lease length
        return self.lease_left(lease, received, action.get("execution_id"))

    def lease_left(self, lease: float | None, received: float, execution_id: Any) -> bool:
        if lease is None:
            return True
        elapsed = time.monotonic() - received
        if elapsed < lease - LEASE_MARGIN_SECONDS:
            return True
        log.warning(
            "%s: execution %s not started: its %gs lease ran out %.0fs after it arrived",
            self.host,
            execution_id,
            lease,
            elapsed,
        )
        return False

    def handle(
        self,
        message: Mapping[str, Any],
        received: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Run (or refuse) one order and spool its result for reporting. An order Warden
        waits to hear started runs only once Warden has answered that it may: one it does
        not start is reported not started, so Warden may offer it again."""
        try:
            order = Order.from_message(message)
        except ValueError as exc:
            log.error("%s: ignoring an action: %s: %s", self.host, exc, dict(message))
            return
        key = f"{order.execution_id}:{order.token}"
        if key in self.done or key in self.results:
            log.warning(
                "%s: execution %s delivered again; not run twice", self.host, order.execution_id
            )
            return
        record = {"execution_id": order.execution_id, "token": order.token, "action": order.action}
        refused = self.executor.refusal(order)
        if refused:
            self.done.append(key)
            log.warning("%s: refused %s: %s", self.host, order.action, refused)
            body = report_body(order.token, Outcome(ok=False, output=refused))
            self.results.put(key, {**record, "state": "finished", "body": body})
            return
        if order.start_within_seconds is not None:
            # On disk before Warden hears of it: if the agent dies before it starts, the
            # next start says it never did.
            self.results.put(key, {**record, "state": "starting"})
            received = time.monotonic() if received is None else received
            why_not = self.say_started(order, received, stop)
            if why_not:
                log.warning(
                    "%s: execution %s (%s) not started: %s",
                    self.host,
                    order.execution_id,
                    order.action,
                    why_not,
                )
                body = not_started_body(order.token, why_not)
                self.results.put(key, {**record, "state": "finished", "body": body})
                return
        self.done.append(key)
        # On disk before it runs: if the agent dies meanwhile, the next start reports it.
        self.results.put(key, {**record, "state": "started", "argv": list(order.argv or ())})
        outcome = self.executor.execute(order)
        log.info("%s: ran %s -> %s", self.host, order.action, "ok" if outcome.ok else "failed")
        self.results.put(
            key, {**record, "state": "finished", "body": report_body(order.token, outcome)}
        )

    def say_started(self, order: Order, received: float, stop: threading.Event | None) -> str:
        """Tell Warden the order is starting; "" once it answers that it may, else why not.

        Warden unreachable: try again with back-off while the order's lease lasts (a start
        Warden took whose answer was lost is answered the same again). Warden refusing it
        (offered again, cancelled, held meanwhile): not started. Raises Misconfigured."""
        backoff = Backoff(self.backoff_start, self.backoff_max)
        path = f"/api/v1/agent/actions/{order.execution_id}/started"
        stop = stop or threading.Event()
        while True:
            if not self.lease_left(order.lease_seconds, received, order.execution_id):
                return "its lease ran out before Warden answered that it may start"
            try:
                self.client.call("POST", path, {"token": order.token})
            except ApiError as exc:
                return f"Warden answered not to start it: {exc}"
            except Unavailable as exc:
                self.warn(backoff.failed(exc))
                if stop.wait(max(backoff.retry_at - time.monotonic(), 0)):
                    return "the agent is stopping"
                continue
            return ""

    def report_pending(self) -> None:
        """Report spooled results in order; a failure to reach the server keeps them."""
        for key, record in self.results.items():
            path = f"/api/v1/agent/actions/{int(record['execution_id'])}/result"
            try:
                self.client.call("POST", path, record["body"])
            except ApiError as exc:
                # 409 stale_token / not_running / argv_mismatch, 404: the server has moved
                # on (lease expired, execution reconciled). Reporting again cannot help.
                log.warning(
                    "%s: result of execution %s not accepted, dropped: %s",
                    self.host,
                    record["execution_id"],
                    exc,
                )
            self.results.remove(key)

    def _recover_interrupted(self) -> None:
        """An action started before a restart and never finished is reported as failed, one
        taken but not started yet as not started; a record that cannot be reported (edited
        by hand?) is dropped."""
        for key, record in self.results.items():
            ids = (record.get("execution_id"), record.get("token"))
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                log.warning(
                    "%s: spooled result %s has no execution id or token; dropped", self.host, key
                )
                self.results.remove(key)
                continue
            if record.get("state") == "finished" and isinstance(record.get("body"), dict):
                continue
            if record.get("state") == "starting":
                log.warning(
                    "%s: execution %s (%s) was taken but not started when the agent stopped; "
                    "reporting it not started",
                    self.host,
                    record["execution_id"],
                    record.get("action"),
                )
                body = not_started_body(record["token"], NEVER_STARTED)
                self.results.put(key, {**record, "state": "finished", "body": body})
                continue
            log.warning(
                "%s: execution %s (%s) was running when the agent stopped; reporting it failed",
                self.host,
                record["execution_id"],
                record.get("action"),
            )
            argv = record.get("argv")
            argv = argv if isinstance(argv, list) and all(isinstance(a, str) for a in argv) else []
            body = report_body(record["token"], Outcome(False, INTERRUPTED, argv, None))
            self.results.put(key, {**record, "state": "finished", "body": body})

    def warn(self, message: str) -> None:
        """Log a problem once per outage, not once per retry: repeats go to DEBUG."""
        level = logging.DEBUG if message in self._warned else logging.WARNING
        self._warned.add(message)
        log.log(level, "%s: %s", self.host, message)


def run_until_signalled(agents: Sequence[Agent]) -> int:
    """Run each agent in its own thread until SIGINT/SIGTERM; 1 if all stopped by themselves."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threads = [
        threading.Thread(target=agent.run, args=(stop,), name=agent.host) for agent in agents
    ]
    for thread in threads:
        thread.start()
    while not stop.is_set() and any(thread.is_alive() for thread in threads):
        stop.wait(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    return 1 if all(agent.error for agent in agents) else 0
