"""The Warden agent: reports a host's metrics and runs the actions Warden sends it.

One agent per host, two threads. One takes a reading every --interval seconds and
posts what it has every --post-every seconds (each reading at once by default; a
large fleet posts a minute's readings as one batch) to POST /api/v1/metrics. The
other holds a long poll on GET /api/v1/agent/actions (--poll-wait seconds, renewed
when it ends), runs each action its allow-list names (and refuses any other) and
reports each result with the action's fencing token as soon as it has it. While
the server is unreachable the agent keeps the last 500 readings and sends them as
one batch when the server is back.

It needs no Django: the standard library, psutil for a real host's metrics, and
`scoring.scenarios` for simulated hosts.

A real host (the key comes from `manage.py add_host`; the environment variable
keeps it out of `ps`):

    WARDEN_AGENT_KEY=... python -m remediation.agent run --url https://warden.example.com \\
        --host web-01 --actions /etc/warden/actions.json

where actions.json maps each allowed action to the command it runs (no shell):

    {"clean_temp_and_rotate_logs": ["/usr/local/sbin/clean-temp", "--rotate-logs"]}

One simulated host, or a whole simulated fleet in one process (what `make demo` runs):

    python -m remediation.agent run --url URL --key KEY --host demo-01 \\
        --simulate disk_filling --seed 3
    python -m remediation.agent fleet --url URL --keys data/fleet-keys.json

The fleet's keys file is {"hosts": [{"name": ..., "key": ..., "scenario": ...}, ...]}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import psutil

if TYPE_CHECKING:
    # Imported lazily at run time: simulation pulls in numpy, a real host's agent need not.
    from scoring.scenarios import SimulatedHost

log = logging.getLogger("warden.agent")

KEY_ENV = "WARDEN_AGENT_KEY"
# ~40 minutes of readings at 5 s; below the server's batch limit (WARDEN_MAX_BATCH,
# 1000), so a backlog always goes in one request.
BUFFER_SIZE = 500
# How long one long poll waits for an action; the server allows up to its
# WARDEN_AGENT_POLL_MAX_SECONDS (60 by default), proxies commonly cut idle requests at 60.
POLL_WAIT = 50.0
# The server refuses a longer result output, which would lose the whole report.
# An action is started only if this much of its lease is left, to run it and report.
LEASE_MARGIN_SECONDS = 5.0
OUTPUT_LIMIT = 10_000
TRUNCATED = "[... output truncated]\n"
DEFAULT_FLAG_FILE = "/var/lib/warden-agent/firewall-change-requested"
# A failed lookup is reported as at least this slow: the host's DNS is broken.
DNS_FAILURE_MS = 5_000.0
SIMULATED_ACTIONS = frozenset(
    {
        "clean_temp_and_rotate_logs",
        "restart_leaking_service",
        "throttle_runaway_process",
        "switch_dns_resolver",
        "apply_firewall_change",
        # and their rollbacks
        "restore_quarantined_files",
        "restart_service",
        "remove_cpu_throttle",
        "restore_dns_resolver",
        "revert_firewall_change",
    }
)

Sample = dict[str, Any]


# --- talking to the server -------------------------------------------------------------


class ApiError(Exception):
    """The server refused a request (a 4xx other than 401/403): retrying cannot help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unavailable(Exception):
    """Unreachable, or not ready (5xx, 429): keep the data and try again later."""


class Misconfigured(Exception):
    """401/403: a wrong key or host name. The agent stops rather than hammer the server."""


def error_from(exc: urllib.error.HTTPError) -> ApiError:
    """Read Warden's {"error": {"code", "message"}} body, or make do without it."""
    try:
        error = json.loads(exc.read())["error"]
        return ApiError(exc.code, str(error["code"]), str(error["message"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ApiError(exc.code, f"http_{exc.code}", str(exc.reason))


def clip(output: str) -> str:
    """At most OUTPUT_LIMIT characters, keeping the end, where errors usually are."""
    if len(output) <= OUTPUT_LIMIT:
        return output
    return TRUNCATED + output[-(OUTPUT_LIMIT - len(TRUNCATED)) :]


def make_sample(
    host: str,
    taken_at: datetime,
    disk_usage: float,
    memory_usage: float,
    cpu_usage: float,
    dns_latency_ms: float,
    firewall_change_requested: int,
) -> Sample:
    """One reading as the metrics API wants it."""
    return {
        "host": host,
        "taken_at": taken_at.isoformat(),
        "disk_usage": round(float(disk_usage), 2),
        "memory_usage": round(float(memory_usage), 2),
        "cpu_usage": round(float(cpu_usage), 2),
        "dns_latency_ms": round(float(dns_latency_ms), 3),
        "firewall_change_requested": 1 if firewall_change_requested else 0,
    }


def summarize(results: Iterable[Mapping[str, Any]]) -> str:
    """ "AUTO_HEAL INC-000004" per distinct decision and ticket, in order."""
    parts: list[str] = []
    for result in results:
        part = str(result.get("decision", "?"))
        if result.get("ticket_id"):
            part += f" {result['ticket_id']}"
        if part not in parts:
            parts.append(part)
    return ", ".join(parts) or "no results"


# --- metrics sources -------------------------------------------------------------------


class MetricsSource(Protocol):
    def read(self) -> Sample: ...


class SimulatedMetrics:
    """Readings from a simulated host (scoring.scenarios), for the demo and tests."""

    def __init__(self, host: SimulatedHost) -> None:
        self.host = host

    def read(self) -> Sample:
        reading = self.host.next_reading()
        # Stamped with the wall clock, not the simulator's: after a stall or an outage the
        # simulator's clock falls behind, and Warden compares samples with its own times
        # (e.g. to verify a fix with metrics taken after it).
        return make_sample(
            reading.host,
            datetime.now(UTC),
            reading.disk_usage,
            reading.memory_usage,
            reading.cpu_usage,
            reading.dns_latency_ms,
            reading.firewall_change_requested,
        )


class SystemMetrics:
    """This machine's metrics, from psutil."""

    def __init__(
        self,
        host: str,
        disk_path: str = "/",
        dns_name: str = "localhost",
        flag_file: str = DEFAULT_FLAG_FILE,
    ) -> None:
        self.host = host
        self.disk_path = disk_path
        self.dns_name = dns_name
        self.flag_file = Path(flag_file)
        # cpu_percent(interval=None) measures since its previous call; the first says 0.0.
        psutil.cpu_percent(interval=None)

    def dns_latency_ms(self) -> float:
        # getaddrinfo has no timeout of its own: a dead resolver stalls this reading for
        # the resolver's timeout, which is itself worth reporting.
        started = time.perf_counter()
        try:
            socket.getaddrinfo(self.dns_name, None)
        except OSError as exc:
            log.warning("%s: cannot resolve %s: %s", self.host, self.dns_name, exc)
            return max((time.perf_counter() - started) * 1000, DNS_FAILURE_MS)
        return (time.perf_counter() - started) * 1000

    def read(self) -> Sample:
        return make_sample(
            self.host,
            datetime.now(UTC),
            psutil.disk_usage(self.disk_path).percent,
            psutil.virtual_memory().percent,
            psutil.cpu_percent(interval=None),
            self.dns_latency_ms(),
            int(self.flag_file.exists()),
        )


# --- executors -------------------------------------------------------------------------


class Executor:
    """Runs allow-listed actions. Anything else is refused, never run."""

    allowed: frozenset[str] = frozenset()

    def allows(self, action: str) -> bool:
        return action in self.allowed

    def execute(self, action: str) -> tuple[bool, str]:
        """(ok, output) of running `action`, or of refusing it."""
        if not self.allows(action):
            return False, f"action {action} is not allow-listed on this agent"
        try:
            ok, output = self.run(action)
        except Exception as exc:  # the server must hear about any failure, not a dead agent
            return False, f"{type(exc).__name__}: {exc}"
        return ok, clip(output)

    def run(self, action: str) -> tuple[bool, str]:
        raise NotImplementedError


class SimulatedExecutor(Executor):
    """Applies actions to the simulated host the metrics come from."""

    allowed = SIMULATED_ACTIONS

    def __init__(self, host: SimulatedHost) -> None:
        self.host = host

    def run(self, action: str) -> tuple[bool, str]:
        return True, self.host.apply_action(action)


class CommandExecutor(Executor):
    """Runs the command an allow-list maps an action to: argv, no shell, with a timeout."""

    def __init__(self, commands: Mapping[str, Sequence[str]], timeout: float = 60.0) -> None:
        self.commands = {action: list(argv) for action, argv in commands.items()}
        self.allowed = frozenset(self.commands)
        self.timeout = timeout

    @classmethod
    def from_file(cls, path: str | Path, timeout: float = 60.0) -> CommandExecutor:
        """Load {action: [argv, ...]}; raises ValueError saying what is wrong with the file."""
        try:
            commands = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read allow-list {path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"allow-list {path} is not valid JSON: {exc}") from exc
        if not isinstance(commands, dict):
            raise ValueError(f"allow-list {path} must be a JSON object {{action: [argv...]}}")
        for action, argv in commands.items():
            if not (isinstance(argv, list) and argv and all(isinstance(arg, str) for arg in argv)):
                raise ValueError(
                    f"allow-list {path}: {action!r} must map to a non-empty list of strings"
                )
        return cls(commands, timeout)

    def run(self, action: str) -> tuple[bool, str]:
        # The agent's key stays with the agent, not with every command it runs.
        env = {name: value for name, value in os.environ.items() if name != KEY_ENV}
        try:
            done = subprocess.run(
                self.commands[action],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                timeout=self.timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            partial = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
            return False, f"{partial}\ntimed out after {self.timeout:g}s"
        output = done.stdout
        if done.returncode != 0:
            output += f"\nexit code {done.returncode}"
        return done.returncode == 0, output


# --- the agent -------------------------------------------------------------------------


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
        buffer_size: int = BUFFER_SIZE,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.host = host
        self.metrics = metrics
        self.executor = executor
        self.interval = interval
        self.post_every = post_every or interval
        self.poll_wait = poll_wait
        self.timeout = timeout
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.buffer: deque[Sample] = deque(maxlen=buffer_size)
        # Results the server has not acknowledged: an action runs once, its report may
        # need several tries.
        self.unreported: deque[dict[str, Any]] = deque()
        # Actions already run, so a repeated delivery cannot run one twice.
        self.done: deque[tuple[int, int]] = deque(maxlen=200)
        self.error: str | None = None  # why the agent stopped by itself (401/403)
        self.halted = threading.Event()  # set with `error`: both threads stop
        self.busy = threading.Lock()  # held while an action runs and is reported
        self.posted = 0
        self._warned: set[str] = set()  # problems already logged in this outage

    def run(self, stop: threading.Event, offset: float = 0.0) -> None:
        """Work until `stop` is set or the server rejects the key; `offset` delays the start.

        Readings are taken and posted in this thread, actions taken in another; on stop
        an action already running finishes and is reported, a poll still waiting is left.
        """
        actions = threading.Thread(
            target=self.take_actions, args=(stop,), name=f"{self.host}-actions", daemon=True
        )
        actions.start()
        try:
            self.report_readings(stop, offset)
        finally:
            actions.join(timeout=1.0)
            with self.busy:  # wait for a running action, not for a waiting poll
                pass

    def report_readings(self, stop: threading.Event, offset: float = 0.0) -> None:
        """Take a reading every `interval`, post the buffer every `post_every`."""
        backoff = Backoff(self.backoff_start, self.backoff_max)
        next_reading = time.monotonic() + offset
        next_post = next_reading
        while not (stop.is_set() or self.halted.is_set()):
            now = time.monotonic()
            if now >= next_reading:
                self.collect()
                next_reading = _next_tick(next_reading, self.interval, now)
            if now >= next_post and now >= backoff.retry_at:
                next_post = _next_tick(next_post, self.post_every, now)
                try:
                    self.flush()
                except Unavailable as exc:
                    self.warn(backoff.failed(exc))
                except Misconfigured as exc:
                    self.halt(exc)
                else:
                    if backoff.reset():
                        log.info("%s: server reachable again", self.host)
                        self._warned.clear()
            wake = min(next_reading, max(next_post, backoff.retry_at))
            stop.wait(max(wake - time.monotonic(), 0.0))

    def take_actions(self, stop: threading.Event) -> None:
        """Long-poll for actions, run each and report it at once, until stopped."""
        backoff = Backoff(self.backoff_start, self.backoff_max)
        while not (stop.is_set() or self.halted.is_set()):
            if time.monotonic() < backoff.retry_at:
                stop.wait(backoff.retry_at - time.monotonic())
                continue
            try:
                self.report_pending()
                actions = self.poll(self.poll_wait)
                received = time.monotonic()
                for action in actions:
                    if stop.is_set():
                        break  # not started: its lease runs out and the server reconciles
                    if not self.within_lease(action, received):
                        continue
                    with self.busy:
                        self.handle(action)
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

    def collect(self) -> None:
        """Take a reading into the buffer; the oldest go first when it is full."""
        try:
            sample = self.metrics.read()
        except Exception as exc:  # a broken sensor must not stop the agent running actions
            log.warning("%s: cannot take a reading: %s: %s", self.host, type(exc).__name__, exc)
            return
        if len(self.buffer) == self.buffer.maxlen:
            self.warn(f"buffer full ({self.buffer.maxlen}); dropping the oldest readings")
        self.buffer.append(sample)

    def flush(self) -> None:
        """Post the buffered readings, one sample alone or all as one batch."""
        if not self.buffer:
            return
        batch = list(self.buffer)
        try:
            body = self.call("POST", "/api/v1/metrics", batch[0] if len(batch) == 1 else batch)
        except ApiError as exc:
            # A refused batch would be refused again: drop it, or it blocks all later ones.
            log.error("%s: server refused %d sample(s), dropped: %s", self.host, len(batch), exc)
        else:
            results = body.get("results", []) if isinstance(body, dict) else []
            routine = len(batch) == 1 and all(
                r.get("decision") == "NO_ACTION" and not r.get("ticket_id") for r in results
            )
            # Healthy samples every few seconds would drown the rest; -v shows them.
            level = logging.DEBUG if routine and self.posted else logging.INFO
            log.log(level, "%s: posted %d sample(s): %s", self.host, len(batch), summarize(results))
            self.posted += len(batch)
        for _ in batch:
            self.buffer.popleft()

    def poll(self, wait: float) -> list[dict[str, Any]]:
        """This host's actions, waiting up to `wait` seconds for one."""
        query = urllib.parse.urlencode({"wait": f"{wait:.2f}"})
        try:
            body = self.call("GET", f"/api/v1/agent/actions?{query}", timeout=wait + self.timeout)
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
        elapsed = time.monotonic() - received
        if elapsed < lease - LEASE_MARGIN_SECONDS:
            return True
        log.warning(
            "%s: execution %s not started: its %ss lease ran out %.0fs after it arrived",
            self.host,
            action.get("execution_id"),
            lease,
            elapsed,
        )
        return False

    def handle(self, action: Mapping[str, Any]) -> None:
        """Run (or refuse) one action and queue its result for reporting."""
        try:
            execution_id, token, name = action["execution_id"], action["token"], action["action"]
        except KeyError as exc:
            log.error("%s: ignoring an action without %s: %s", self.host, exc, action)
            return
        if (execution_id, token) in self.done:
            log.warning("%s: execution %s delivered again; not run twice", self.host, execution_id)
            return
        self.done.append((execution_id, token))
        allowed = self.executor.allows(name)
        ok, output = self.executor.execute(name)  # refuses, never runs, what is not allowed
        if allowed:
            log.info("%s: ran %s -> %s", self.host, name, "ok" if ok else "failed")
        else:
            log.warning("%s: refused %s: not allow-listed on this agent", self.host, name)
        self.unreported.append(
            {"execution_id": execution_id, "token": token, "ok": ok, "output": clip(output)}
        )

    def report_pending(self) -> None:
        """Report queued results in order; a failure to reach the server keeps them queued."""
        while self.unreported:
            result = self.unreported[0]
            path = f"/api/v1/agent/actions/{int(result['execution_id'])}/result"
            payload = {key: result[key] for key in ("token", "ok", "output")}
            try:
                self.call("POST", path, payload)
            except ApiError as exc:
                # 409 stale_token / not_running, 404: the server has moved on (lease
                # expired, execution reconciled). Reporting again cannot change that.
                log.warning(
                    "%s: result of execution %s not accepted, dropped: %s",
                    self.host,
                    result["execution_id"],
                    exc,
                )
            self.unreported.popleft()

    def call(
        self, method: str, path: str, payload: Any = None, timeout: float | None = None
    ) -> Any:
        """One JSON request; raises ApiError, Unavailable or Misconfigured."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.key}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": "warden-agent",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                raw = response.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            error = error_from(exc)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: a 2xx that is not JSON, e.g. a proxy's page: not Warden (yet).
            raise Unavailable(f"{method} {path}: {reason(exc)}") from exc
        if error.status in (401, 403):
            raise Misconfigured(f"{method} {path} refused: {error.message} (HTTP {error.status})")
        if error.status >= 500 or error.status == 429:
            raise Unavailable(f"{method} {path}: {error}")
        raise error

    def warn(self, message: str) -> None:
        """Log a problem once per outage, not once per retry: repeats go to DEBUG."""
        level = logging.DEBUG if message in self._warned else logging.WARNING
        self._warned.add(message)
        log.log(level, "%s: %s", self.host, message)


class Backoff:
    """Wait longer after each failure, from `start` doubling up to `most`, jittered for fleets."""

    def __init__(self, start: float, most: float) -> None:
        self.start, self.most = start, most
        self.delay = 0.0
        self.retry_at = 0.0

    def failed(self, exc: Exception) -> str:
        """Schedule the next try; returns what to warn about."""
        self.delay = min(self.delay * 2, self.most) if self.delay else self.start
        self.retry_at = time.monotonic() + self.delay * random.uniform(0.8, 1.0)
        return f"server unavailable ({exc}); keeping readings, retrying with back-off"

    def reset(self) -> bool:
        """Back to normal; True if it had been backing off."""
        was, self.delay, self.retry_at = self.delay, 0.0, 0.0
        return bool(was)


def _next_tick(tick: float, every: float, now: float) -> float:
    """The next tick after `tick`; after falling behind (a slow action), now + every: no burst."""
    tick += every
    return tick if tick > now else now + every


def reason(exc: BaseException) -> str:
    """The short why of a network error (urllib wraps the socket error in URLError)."""
    inner = getattr(exc, "reason", None)
    return str(inner) if inner is not None else (str(exc) or type(exc).__name__)


# --- command line ----------------------------------------------------------------------


class UsageError(Exception):
    """A bad argument or file: reported as one line on stderr."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One readable line instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message}\n")


def simulated_agent(
    url: str, key: str, name: str, scenario: str, seed: int, args: argparse.Namespace
) -> Agent:
    """An Agent for one simulated host: its readings and its actions share the host."""
    try:
        from scoring.scenarios import SCENARIOS, SimulatedHost
    except ImportError as exc:
        raise UsageError(f"simulation needs scoring.scenarios from Warden's source: {exc}") from exc

    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r} (one of: {', '.join(SCENARIOS)})")
    host = SimulatedHost(name, scenario, seed, datetime.now(UTC), interval_seconds=args.interval)
    return Agent(url, key, name, SimulatedMetrics(host), SimulatedExecutor(host), **schedule(args))


def schedule(args: argparse.Namespace) -> dict[str, float]:
    return {"interval": args.interval, "post_every": args.post_every, "poll_wait": args.poll_wait}


def load_fleet(path: str) -> list[dict[str, str]]:
    """The hosts of a fleet keys file; raises UsageError saying what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read keys file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"keys file {path} is not valid JSON: {exc}") from exc
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, list) or not hosts:
        raise UsageError(f'keys file {path} must be {{"hosts": [{{"name", "key", "scenario"}}]}}')
    fleet = []
    for index, item in enumerate(hosts):
        if not (isinstance(item, dict) and item.get("name") and item.get("key")):
            raise UsageError(f"keys file {path}: hosts[{index}] needs a name and a key")
        fleet.append(
            {
                "name": str(item["name"]),
                "key": str(item["key"]),
                "scenario": str(item.get("scenario") or "healthy"),
            }
        )
    names = [host["name"] for host in fleet]
    if len(set(names)) != len(names):
        raise UsageError(f"keys file {path}: a host name appears twice")
    return fleet


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url must be http(s)://host[:port], got {url!r}")
    return url.rstrip("/")


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--url", required=True, help="Warden's base URL, e.g. http://127.0.0.1:8000"
    )
    common.add_argument("--interval", type=positive, default=5.0, help="seconds between readings")
    common.add_argument(
        "--post-every",
        type=positive,
        help="seconds between posts of the readings taken (default: --interval, each at once)",
    )
    common.add_argument(
        "--poll-wait",
        type=positive,
        default=POLL_WAIT,
        help=f"seconds one long poll for actions waits (default {POLL_WAIT:g})",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every sample posted")

    parser = Parser(prog="python -m remediation.agent", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,fleet}")

    run = commands.add_parser("run", parents=[common], help="run the agent of one host")
    run.add_argument("--key", help=f"the host's API key (default: ${KEY_ENV})")
    run.add_argument("--host", required=True, help="this host's name in Warden")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--simulate", metavar="SCENARIO", help="simulate a host in this scenario")
    source.add_argument("--actions", metavar="FILE", help="allow-list JSON {action: [argv...]}")
    run.add_argument("--seed", type=int, help="the simulation's random seed (with --simulate)")
    run.add_argument("--action-timeout", type=positive, default=60.0, help="seconds per command")
    run.add_argument("--disk-path", default="/", help="filesystem whose usage is reported")
    run.add_argument("--dns-name", default="localhost", help="name resolved to time DNS")
    run.add_argument(
        "--firewall-flag",
        default=DEFAULT_FLAG_FILE,
        help="a firewall change is requested while this file exists",
    )

    fleet = commands.add_parser("fleet", parents=[common], help="run simulated agents for a fleet")
    fleet.add_argument("--keys", required=True, metavar="FILE", help="fleet keys JSON file")
    fleet.add_argument("--seed", type=int, default=0, help="first host's seed; the next get +1")
    return parser


def run_until_signalled(agents: Sequence[Agent], interval: float) -> int:
    """Run each agent in its own thread until SIGINT/SIGTERM; 1 if all stopped by themselves."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threads = [
        # Staggered starts spread a fleet's posts over the interval.
        threading.Thread(
            target=agent.run, args=(stop, index * interval / len(agents)), name=agent.host
        )
        for index, agent in enumerate(agents)
    ]
    for thread in threads:
        thread.start()
    while not stop.is_set() and any(thread.is_alive() for thread in threads):
        stop.wait(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    return 1 if all(agent.error for agent in agents) else 0


def agents_from(args: argparse.Namespace) -> list[Agent]:
    url = check_url(args.url)
    if args.command == "fleet":
        return [
            simulated_agent(url, host["key"], host["name"], host["scenario"], args.seed + i, args)
            for i, host in enumerate(load_fleet(args.keys))
        ]
    key = args.key or os.environ.get(KEY_ENV)
    if not key:
        raise UsageError(f"no API key: pass --key or set {KEY_ENV}")
    if args.seed is not None and not args.simulate:
        raise UsageError("--seed needs --simulate")
    if args.simulate:
        return [simulated_agent(url, key, args.host, args.simulate, args.seed or 0, args)]
    if args.actions:
        try:
            executor: Executor = CommandExecutor.from_file(args.actions, args.action_timeout)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    else:
        log.warning("%s: no --actions allow-list; every action will be refused", args.host)
        executor = CommandExecutor({})
    metrics = SystemMetrics(args.host, args.disk_path, args.dns_name, args.firewall_flag)
    return [Agent(url, key, args.host, metrics, executor, **schedule(args))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        agents = agents_from(args)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    log.info("warden agent: %d host(s) reporting to %s", len(agents), agents[0].url)
    return run_until_signalled(agents, args.interval)


if __name__ == "__main__":
    sys.exit(main())
