"""The live console's event-to-screen latency in a second browser, beside its transport's floor.

Issue 11's figure: an audit event reaches a second browser watching `/console/` in under
500 ms at p95, measured through the real servers with Debian's Chromium.

Arrangement (`--arrangement`):
- `asgi` (default): PostgreSQL, Redis (channels-redis carries the events between
  processes) and gunicorn with 2 uvicorn workers serving pages and websockets;
- `front`: the README's production roles: nginx in front of `web` (gunicorn, 2 sync
  workers) and `live` (gunicorn, one uvicorn worker, `/ws/`);
- `embedded`: SQLite and the in-memory layer (one relay per web process tails the audit
  log), gunicorn with 2 uvicorn workers, as `make demo` runs.

PostgreSQL and Redis are the development servers (postgres://postgres@127.0.0.1:55432, a
database of the bench's own, dropped and created each run; redis://127.0.0.1:56379, a
database number of the bench's own) when they answer, else throwaway ones
(bench/servers.py); `--database-url` and `--redis-url` name others.

Two browser contexts log in through /admin/login/ as a supervisor. Browser B opens
/console/ and waits for its status to read "live"; then a MutationObserver on `#events`
records when each `li[data-sequence]` enters the page (Date.now()) and the next animation
frame after it (on screen), and a wrapper of WebSocket (installed before the page's
scripts) when each event came over the socket. At the same time, events come from:
1. a writer process (Django, as a qcluster worker is), pausing and resuming automation
   through governance.pauses.actions every `--interval` s: `--events` events, each stamped
   with time.time() by an on-commit hook that runs just before the console's publish
   (and one just after it);
2. browser A, the person acting: `--acted` pauses added through the admin's form, spread
   over the same time, timed from the event's created_at (taken before its commit).
Latency = arrival in browser B - commit, one machine, one clock. An event that never
shows counts as infinitely late (p95 "never" when more than 5% never show), and a note
says whether it came over the socket and was dropped by the page.

Floors, from this process against the same Redis and the same Chromium:
- the bare transport: channels-redis group_send from a thread to a minimal ASGI
  websocket app (uvicorn, no Django) that forwards to a page appending the same `li`:
  the same N events at the same spacing, half an interval after the writer's (so both
  see the same machine), timed by the same observer;
- channels-redis group_send -> receive, and Redis PUBLISH -> SUBSCRIBE, in one process;
- a Playwright page.evaluate round trip (this process <-> Chromium).

    .venv/bin/python bench/bench_console_latency.py [--events N] [--arrangement asgi|front|embedded]

About 1-2 minutes (migrate and collectstatic are a third of it). Other work on the machine
shows in every figure: the bench prints how busy the cores were while it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import (
    ARRANGEMENTS,
    LIVE_COMMAND,
    PYTHON,
    ROOT,
    Databases,
    Front,
    Server,
    free_port,
    manage,
    throwaway_servers,
    warden_env,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEV_DATABASE_URL = "postgres://postgres@127.0.0.1:55432/warden_console_bench"
DEV_REDIS_URL = "redis://127.0.0.1:56379/11"
USERNAME = "bench-supervisor"
GOAL_P95_MS = 500.0

# Installed in browser B once the console is live: when each event's li enters the page,
# and the first animation frame after that (the frame that paints it).
OBSERVE = """() => {
  const bench = window.__bench = {dom: {}, frame: {}, statuses: []};
  const seen = (li) => {
    const sequence = li.dataset.sequence;
    if (sequence in bench.dom) return;
    bench.dom[sequence] = Date.now();
    requestAnimationFrame(() => { bench.frame[sequence] = Date.now(); });
  };
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.matches("li[data-sequence]")) seen(node);
        node.querySelectorAll("li[data-sequence]").forEach(seen);
      }
    }
  }).observe(document.querySelector("#events"), {childList: true, subtree: true});
  const status = document.querySelector("[data-testid=status]");
  new MutationObserver(() => bench.statuses.push([Date.now(), status.textContent.trim()]))
    .observe(status, {childList: true, characterData: true, subtree: true});
}"""
# Added to every page before its own scripts: when each event first comes over a websocket,
# before the page's handler sees it.
SOCKETS = """(() => {
  const times = window.__socketTimes = {};
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const socket = new Native(...args);
    socket.addEventListener("message", (message) => {
      try {
        const data = JSON.parse(message.data);
        for (const event of data.events || (data.event ? [data.event] : [])) {
          if (!(event.sequence in times)) times[event.sequence] = Date.now();
        }
      } catch (error) { /* not an event */ }
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})()"""
IS_LIVE = """() => {
  const status = document.querySelector("[data-testid=status]");
  return status !== null && status.textContent.trim().toLowerCase() === "live";
}"""

# The floor's page: the console's event list and its show(), nothing else.
FLOOR_PAGE = b"""<!doctype html><title>floor</title>
<p>Connection: <span data-testid="status">connecting</span></p><ol id="events" reversed></ol>
<script>
const list = document.getElementById("events");
const status = document.querySelector("[data-testid=status]");
const socket = new WebSocket(`ws://${location.host}/ws/floor`);
socket.onopen = () => { status.textContent = "live"; };
socket.onmessage = (message) => {
  const event = JSON.parse(message.data).event;
  const item = document.createElement("li");
  item.dataset.action = event.action;
  item.dataset.sequence = event.sequence;
  item.textContent = `#${event.sequence} ${event.action}: ${event.summary}`;
  list.prepend(item);
};
</script>"""


# --- statistics and output ---------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(name: str, latencies_ms: list[float], expected: int | None = None) -> dict[str, Any]:
    """count, missed (of `expected`, if given), p50, p95, p99 and max of `latencies_ms`.

    A missed event counts as never arriving (infinitely late), so the percentiles are of
    every event expected, not only of those that came."""
    row: dict[str, Any] = {"what": name, "count": len(latencies_ms)}
    row["missed"] = max(0, expected - len(latencies_ms)) if expected is not None else 0
    values = latencies_ms + [math.inf] * row["missed"]
    for label, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        row[label] = percentile(values, fraction) if values else None
    row["max"] = max(values) if values else None
    return row


def as_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` with "never" for an infinite latency (JSON has no infinity)."""
    return [{k: "never" if v == math.inf else v for k, v in row.items()} for row in rows]


def print_table(rows: list[dict[str, Any]]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else "never" if value == math.inf else f"{value:8.1f}"

    width = max(len(row["what"]) for row in rows)
    print(
        f"\n| {'what':{width}} | count | missed |    p50 ms |    p95 ms |    p99 ms |    max ms |"
    )
    print(f"|{'-' * (width + 2)}|-------|--------|-----------|-----------|-----------|-----------|")
    for row in rows:
        print(
            f"| {row['what']:{width}} | {row['count']:5} | {row['missed']:6} "
            f"| {ms(row['p50']):>9} | {ms(row['p95']):>9} | {ms(row['p99']):>9} "
            f"| {ms(row['max']):>9} |"
        )


# --- databases and servers ---------------------------------------------------------------


def answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1):
            return True
    except OSError:
        return False


def recreate_database(database_url: str, create: bool = True) -> None:
    """Drop (and create) the bench's database on a PostgreSQL server it shares."""
    import psycopg

    parts = urlsplit(database_url.replace("postgres://", "postgresql://"))
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis(redis_url: str) -> None:
    """Empty the bench's own Redis database (the tasks a resume enqueues stay otherwise)."""
    import redis

    if redis_url == DEV_REDIS_URL:  # only the database number the bench owns
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()


@contextlib.contextmanager
def databases(args: argparse.Namespace) -> Iterator[Databases | None]:
    """The PostgreSQL and Redis of this run (None: the embedded arrangement, SQLite)."""
    if args.arrangement == "embedded":
        yield None
    elif answers(args.database_url) and answers(args.redis_url):
        recreate_database(args.database_url)
        flush_redis(args.redis_url)
        try:
            yield Databases(args.database_url, args.redis_url)
        finally:
            recreate_database(args.database_url, create=False)
            flush_redis(args.redis_url)
    else:
        print("(development PostgreSQL/Redis not answering: throwaway servers)", flush=True)
        with throwaway_servers("warden_console_bench") as throwaway:
            yield throwaway


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {
        **env,
        "WARDEN_ENV": "embedded",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "WARDEN_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


SETUP_USER = """
import os
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
user, _ = get_user_model().objects.get_or_create(username=os.environ["BENCH_USER"])
user.is_staff = True
user.set_password(os.environ["BENCH_PASSWORD"])
user.save()
user.groups.add(Group.objects.get(name="supervisors"))
assert user.has_perm("governance.view_auditevent")
"""

DUMP_EVENTS = """
import json, os
from governance.models import AuditEvent
rows = AuditEvent.objects.filter(sequence__gt=int(os.environ["BENCH_AFTER"])).order_by("sequence")
print(json.dumps([[r.sequence, r.action, r.created_at.timestamp()] for r in rows]))
"""


def prepare(env: dict[str, str], password: str, production: bool) -> None:
    """Migrate, collect the static files (production's manifest storage renders no page
    without them; at the same time), and make the supervisor."""
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(manage, env, "migrate", "--noinput", "-v0")]
        if production:
            jobs.append(pool.submit(manage, env, "collectstatic", "--noinput", "-v0"))
        for job in jobs:
            job.result()
    manage({**env, "BENCH_USER": USERNAME, "BENCH_PASSWORD": password}, "shell", "-c", SETUP_USER)


def events_after(env: dict[str, str], sequence: int) -> list[tuple[int, str, float]]:
    """(sequence, action, created_at as a Unix time) of the audit events after `sequence`."""
    out = manage({**env, "BENCH_AFTER": str(sequence)}, "shell", "-c", DUMP_EVENTS)
    return [tuple(row) for row in json.loads(out.strip().splitlines()[-1])]


def start_servers(arrangement: str, env: dict[str, str], work: Path) -> tuple[str, list[Any]]:
    """Warden served in `arrangement`: the browsers' base URL and what to stop afterwards."""
    if arrangement == "front":
        web_port, live_port = free_port(), free_port()
        front = Front(work, web_port, live_port)  # nginx proxies lazily: it may start first
        # The front passes on the host without its port: the login's origin must be trusted.
        env = {**env, "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{front.port}"}
        started: list[Any] = [front]
        try:
            started.append(Server("web", ARRANGEMENTS["sync"].format(workers=2), env, web_port))
            started.append(Server("live", LIVE_COMMAND, env, live_port))
            for server in started[1:]:
                server.wait_ready()
            wait_port(front.port)
        except BaseException:
            stop_all(started, show_logs=True)
            raise
        return f"http://127.0.0.1:{front.port}", started
    web = Server("web", ARRANGEMENTS["uvicorn"].format(workers=2), env, free_port())
    try:
        web.wait_ready()
    except BaseException:
        stop_all([web], show_logs=True)
        raise
    return f"http://127.0.0.1:{web.port}", [web]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def stop_all(servers: list[Any], show_logs: bool = False) -> None:
    """Stop `servers` (last started first); with `show_logs`, print the end of their logs."""
    for server in servers if show_logs else []:
        log = getattr(server, "log", None)
        if log is not None and Path(log).exists():
            print(f"--- end of {log}:\n{Path(log).read_text()[-2000:]}", file=sys.stderr)
    for server in reversed(servers):
        with contextlib.suppress(Exception):
            server.stop()


# --- the writer process --------------------------------------------------------------------


def writer(count: int, interval: float) -> None:
    """In its own process (Django set up from the environment): wait for "go" on stdin, then
    pause or resume automation every `interval` s, printing one JSON line per event."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from governance.models import AuditEvent, Pause
    from governance.pauses.actions import pause_automation, resume_pause

    user = get_user_model().objects.get(username=USERNAME)

    def step(index: int, pause: Pause | None) -> tuple[Pause | None, dict[str, Any]]:
        stamp: dict[str, float] = {}
        with transaction.atomic():
            # On-commit hooks run in order: this one just before the audit log's publish ...
            transaction.on_commit(lambda: stamp.setdefault("committed", time.time()))
            if pause is None:
                subject = pause_automation(
                    Pause(scope="all"), actor=user, reason=f"bench {index}", now=timezone.now()
                )
                action, after = "automation.paused", subject
            else:
                resume_pause(pause, actor=user, reason=f"bench {index}", now=timezone.now())
                subject, action, after = pause, "automation.resumed", None
            # ... and this one after it (and after a resume's enqueued task).
            transaction.on_commit(lambda: stamp.setdefault("published", time.time()))
        sequence = AuditEvent.objects.get(
            object_type="Pause", object_id=str(subject.pk), action=action
        ).sequence
        return after, {"sequence": sequence, "action": action, **stamp}

    pause, _ = step(-1, None)  # warm: connections, the channel layer, the first queries
    pause, _ = step(-1, pause)
    first = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    print(json.dumps({"ready": True, "after": first}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    start = time.monotonic()
    for index in range(count):
        pause, record = step(index, pause)
        print(json.dumps(record), flush=True)
        time.sleep(max(0.0, start + (index + 1) * interval - time.monotonic()))
    if pause is not None:
        resume_pause(pause, actor=user, reason="bench: done", now=timezone.now())
    print(json.dumps({"done": True}), flush=True)


class WriterProcess:
    def __init__(self, env: dict[str, str], count: int, interval: float) -> None:
        self.after = 0  # the last sequence before the measured events
        self.process = subprocess.Popen(
            [PYTHON, __file__, "--writer", "--events", str(count), "--interval", str(interval)],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> None:
        self.after = self.line()["after"]

    def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        text = self.process.stdout.readline()
        if not text:
            self.process.wait()
            raise SystemExit(f"the writer process exited ({self.process.returncode})")
        return json.loads(text)

    def run(self) -> list[dict[str, Any]]:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        records = []
        while "done" not in (record := self.line()):
            records.append(record)
        self.process.wait(timeout=30)
        return records

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- the browsers ----------------------------------------------------------------------------


def new_page(browser: Any) -> Any:
    """A page in a browser context of its own, its websockets' messages timed (SOCKETS)."""
    context = browser.new_context()
    context.add_init_script(SOCKETS)
    return context.new_page()


def log_in(browser: Any, base: str, password: str) -> Any:
    """A new browser context logged in through the admin's login page; its page on /console/."""
    page = new_page(browser)
    page.goto(f"{base}/admin/login/?next=/console/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", password)
    page.click("[type=submit]")
    try:
        page.wait_for_url(lambda url: urlsplit(url).path == "/console/", timeout=20_000)
    except Exception as error:
        errors = page.locator(".errornote, .errorlist").all_inner_texts()
        raise RuntimeError(f"could not log in: {page.url} {errors}") from error
    return page


def watch(page: Any, timeout: float = 20) -> None:
    """Wait for the page's status to read live, then install the observer."""
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    try:
        page.wait_for_function(IS_LIVE, timeout=timeout * 1000)
    except Exception as error:
        status = page.locator("[data-testid=status]")
        shown = status.inner_text() if status.count() else "no [data-testid=status]"
        raise RuntimeError(
            f"{page.url} did not go live within {timeout:.0f} s (status: {shown!r}; "
            f"browser console: {messages[-5:]})"
        ) from error
    page.wait_for_timeout(1000)  # the catch-up of recent events is in
    page.evaluate(OBSERVE)


def arrivals(page: Any, expected: list[int], timeout: float = 10) -> dict[str, Any]:
    """The page's records ({"dom", "frame", "socket": {sequence: ms}, "statuses"}), once every
    `expected` sequence is on screen, or came over the socket a second ago and is not, or
    `timeout` passed."""
    deadline = time.monotonic() + timeout
    grace = None
    while True:
        found = page.evaluate("() => ({...window.__bench, socket: window.__socketTimes})")
        missing = [str(s) for s in expected if str(s) not in found["frame"]]
        if not missing or time.monotonic() > deadline:
            return found
        if all(s in found["socket"] for s in missing):
            grace = grace or time.monotonic() + 1
            if time.monotonic() > grace:
                return found
        page.wait_for_timeout(200)


def missed_note(name: str, records: list[dict[str, Any]], seen: dict[str, Any]) -> str | None:
    """Why events of `records` never showed: not received, or received and not shown."""
    missed = [r["sequence"] for r in records if str(r["sequence"]) not in seen["frame"]]
    if not missed:
        return None
    socket = {int(k): v for k, v in seen["socket"].items()}
    received = [s for s in missed if s in socket]
    overtaken = [s for s in received if any(t > s and at < socket[s] for t, at in socket.items())]
    return (
        f"{name}: {len(missed)} events never shown {missed[:10]}; {len(received)} of them came "
        f"over the websocket, {len(overtaken)} after a later sequence had (out of order: "
        "the console drops an event whose sequence is below the last it showed)"
    )


def act(page: Any, base: str, count: int, interval: float) -> None:
    """Browser A, the person acting: add `count` pauses through the admin's form ("Save and
    add another"), one every `interval` s at most."""
    page.goto(f"{base}/admin/governance/pause/add/")
    for index in range(count):
        started = time.monotonic()
        page.select_option("select[name=scope]", "all")
        page.fill("[name=reason]", f"bench: browser A, pause {index}")
        for field in page.locator("textarea[required], input[type=text][required]").all():
            if not field.input_value():  # a field a newer form requires (a change reason ...)
                field.fill("bench")
        with page.expect_navigation():
            page.click("input[name=_addanother]")
        if page.locator(".errornote, .errorlist").count():
            errors = page.locator(".errornote, .errorlist").all_inner_texts()
            raise RuntimeError(f"the admin refused the pause: {errors}")
        page.wait_for_timeout(max(0.0, interval - (time.monotonic() - started)) * 1000)


def evaluate_round_trips(page: Any, count: int = 200) -> list[float]:
    page.evaluate("() => 1")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        page.evaluate("() => 1")
        times.append((time.perf_counter() - started) * 1000)
    return times


# --- floors ------------------------------------------------------------------------------------


def redis_layer(redis_url: str) -> Any:
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(hosts=[{"address": redis_url}])


def floor_app(redis_url: str) -> Callable:
    """A minimal ASGI app: the floor's page, and a websocket forwarding the group "floor"."""
    layer = redis_layer(redis_url)

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": FLOOR_PAGE})
            return
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        channel = await layer.new_channel()
        await layer.group_add("floor", channel)
        await send({"type": "websocket.accept"})

        async def forward() -> None:
            while True:
                message = await layer.receive(channel)
                await send({"type": "websocket.send", "text": json.dumps(message)})

        task = asyncio.create_task(forward())
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            task.cancel()
            await layer.group_discard("floor", channel)

    return app


@contextlib.contextmanager
def floor_server(redis_url: str) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            floor_app(redis_url), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def floor_publish(redis_url: str, count: int, interval: float) -> list[dict[str, Any]]:
    """group_send `count` events to "floor" every `interval` s, half an interval after the
    writer's: the floor is measured beside the product, on the same machine at once."""
    layer = redis_layer(redis_url)
    await layer.group_send("floor", {"type": "warm", "event": {"sequence": 0}})
    records = []
    start = time.monotonic() + interval / 2
    for index in range(1, count + 1):
        await asyncio.sleep(max(0.0, start + (index - 1) * interval - time.monotonic()))
        sent = time.time()
        await layer.group_send(
            "floor",
            {
                "type": "audit.event",
                "event": {"sequence": index, "action": "floor.event", "summary": f"floor {index}"},
            },
        )
        records.append({"sequence": index, "committed": sent})
    return records


async def layer_round_trips(redis_url: str, count: int = 200) -> list[float]:
    """channels-redis group_send -> receive on a channel of the group, in one event loop."""
    layer = redis_layer(redis_url)
    channel = await layer.new_channel()
    await layer.group_add("floor-rtt", channel)
    times = []
    for index in range(count + 1):
        started = time.perf_counter()
        await layer.group_send("floor-rtt", {"type": "ping", "n": index})
        await layer.receive(channel)
        if index:  # the first one opens the connections
            times.append((time.perf_counter() - started) * 1000)
    await layer.group_discard("floor-rtt", channel)
    return times


def pubsub_round_trips(redis_url: str, count: int = 200) -> list[float]:
    """Redis PUBLISH -> SUBSCRIBE in one process (two connections)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    channel = f"warden-bench-floor-{secrets.token_hex(4)}"
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)  # the subscription's confirmation
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            client.publish(channel, b"x")
            while pubsub.get_message(timeout=1) is None:
                pass
            times.append((time.perf_counter() - started) * 1000)
    finally:
        pubsub.close()
        client.close()
    return times


# --- the run -------------------------------------------------------------------------------


def latencies(records: list[dict[str, Any]], seen: dict[str, Any], key: str) -> list[float]:
    return [
        seen[key][str(r["sequence"])] - r["committed"] * 1000
        for r in records
        if str(r["sequence"]) in seen[key]
    ]


def run(args: argparse.Namespace) -> None:
    import psutil
    from playwright.sync_api import sync_playwright

    began = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - began:5.1f} s] {text}", flush=True)

    if not Path(CHROMIUM).exists():
        raise SystemExit("the bench needs Debian's chromium: apt-get install chromium")
    password = secrets.token_urlsafe(16)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with (
        databases(args) as dbs,
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as stack,
        ThreadPoolExecutor(2) as pool,  # asyncio away from Playwright's loop in this thread
    ):
        work = Path(tmp)
        env = warden_env(dbs, work) if dbs else embedded_env(work)
        redis_url = dbs.redis_url if dbs else (args.redis_url if answers(args.redis_url) else "")
        say(
            f"Preparing ({args.arrangement}): migrate, "
            + ("collectstatic, " if dbs else "")
            + "a supervisor ..."
        )
        prepare(env, password, production=dbs is not None)
        say("Starting the servers, the writer process and Chromium ...")
        base, servers = start_servers(args.arrangement, env, work)
        stack.push(lambda kind, *_: stop_all(servers, show_logs=kind is not None))
        writer_process = WriterProcess(env, args.events, args.interval)
        stack.callback(writer_process.stop)
        writer_process.ready()
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        stack.callback(browser.close)
        acting = log_in(browser, base, password)
        watching = log_in(browser, base, password)
        watch(watching)
        floor_page = None
        if redis_url:
            floor_page = new_page(browser)
            floor_page.goto(stack.enter_context(floor_server(redis_url)))
            watch(floor_page)
        say(
            f"Browser B live on {base}/console/: {args.events} events from the writer process, "
            f"one every {args.interval * 1000:.0f} ms"
            + (", the floor's between them" if floor_page else "")
            + (
                f"; browser A adds {args.acted} pauses in the admin meanwhile ..."
                if args.acted
                else " ..."
            )
        )
        psutil.cpu_percent()
        load_before = os.getloadavg()[0]
        floor_run = (
            pool.submit(asyncio.run, floor_publish(redis_url, args.events, args.interval))
            if floor_page
            else None
        )
        writer_run = pool.submit(writer_process.run)
        acted: list[dict[str, Any]] = []
        if args.acted:  # meanwhile, browser A acts
            try:
                act(acting, base, args.acted, args.events * args.interval / args.acted)
            except Exception as error:  # the admin's form is not what this bench measures
                notes.append(f"browser A could not act through the admin: {error}")
        written = writer_run.result()
        published = floor_run.result() if floor_run else []
        busy, load_after = psutil.cpu_percent(), os.getloadavg()[0]
        if args.acted:
            ours = {r["sequence"] for r in written}
            acted = [
                {"sequence": sequence, "committed": created}
                for sequence, action, created in events_after(env, writer_process.after)
                if action == "automation.paused" and sequence not in ours
            ]
        seen = arrivals(watching, [r["sequence"] for r in written + acted])
        statuses = [status for _, status in seen["statuses"] if status.lower() != "live"]
        if statuses:
            notes.append(f"browser B's console left live during the run: {statuses}")
        for name, records in (("writer", written), ("browser A", acted)):
            if note := missed_note(name, records, seen):
                notes.append(note)
        say("Floors: round trips ...")
        product = summary(
            "product: writer commit -> browser B frame",
            latencies(written, seen, "frame"),
            len(written),
        )
        rows += [
            summary(
                "product: writer commit -> browser B websocket",
                latencies(written, seen, "socket"),
                len(written),
            ),
            summary(
                "product: writer commit -> browser B DOM",
                latencies(written, seen, "dom"),
                len(written),
            ),
            product,
            summary(
                "  of it: commit -> the writer's publish returns"
                + ("" if dbs else " (no Redis: nothing)"),
                # a pause's only on-commit hook is the publish (a resume also enqueues a task)
                [
                    (r["published"] - r["committed"]) * 1000
                    for r in written
                    if r["action"] == "automation.paused"
                ],
            ),
        ]
        if acted:
            rows.append(
                summary(
                    "product: browser A admin pause -> browser B frame",
                    latencies(acted, seen, "frame"),
                    len(acted),
                )
            )
        if floor_page:
            floor_seen = arrivals(floor_page, [r["sequence"] for r in published])
            if note := missed_note("floor", published, floor_seen):
                notes.append(note)
            floor_page.context.close()
            rows += [
                summary(
                    "floor: group_send -> bare websocket -> browser frame",
                    latencies(published, floor_seen, "frame"),
                    len(published),
                ),
                summary(
                    "floor: channels-redis group_send -> receive",
                    pool.submit(asyncio.run, layer_round_trips(redis_url)).result(),
                ),
                summary("floor: Redis PUBLISH -> SUBSCRIBE", pubsub_round_trips(redis_url)),
            ]
        rows.append(
            summary("floor: Playwright page.evaluate round trip", evaluate_round_trips(watching))
        )

    say("Done.")
    print_table(rows)
    print(
        f"\nThe machine during the writer's events: {busy:.0f}% of {psutil.cpu_count()} cores "
        f"busy (every process, this bench's and others'), load average {load_before:.1f} -> "
        f"{load_after:.1f}."
    )
    if product["p95"] is not None:
        verdict = "meets" if product["p95"] < GOAL_P95_MS else "MISSES"
        print(
            f"Goal: an event on a second browser's screen within {GOAL_P95_MS:.0f} ms at p95: "
            f"{verdict} it ({product['p95']:.0f} ms, {args.arrangement} arrangement"
            + (f"; {product['missed']} events never shown" if product["missed"] else "")
            + ")."
        )
    for note in notes:
        print(f"Note: {note}")
    print(
        json.dumps(
            {
                "arrangement": args.arrangement,
                "interval_s": args.interval,
                "cpu_busy_percent": busy,
                "rows": as_json(rows),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="events the writer makes")
    parser.add_argument("--interval", type=float, default=0.075, help="seconds between events")
    parser.add_argument("--acted", type=int, default=20, help="pauses browser A adds (0: none)")
    parser.add_argument("--arrangement", choices=("asgi", "front", "embedded"), default="asgi")
    parser.add_argument("--database-url", default=DEV_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEV_REDIS_URL)
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer(args.events, args.interval)
    else:
        run(args)


if __name__ == "__main__":
    main()
