"""A load generator for bench/: agents posting metric samples over HTTP/1.1, asyncio, no deps.

Run as its own process (so its CPU is not the server's, and is measured): it reads a
job as JSON on stdin and prints the result as JSON on stdout.

Two kinds of job:
- "closed": `connections` agents post back to back for `duration` seconds (after
  `warmup` seconds not counted), each request to the next host in turn;
- "fleet": every host posts a batch of `samples_per_request` samples every `period`
  seconds at its own phase (open loop: a late answer does not delay the next
  post, and latency counts from when the post was due).

Requests use keep-alive where the server allows it (uvicorn) and reconnect where it
closes (gunicorn's sync workers), as real agents do. Samples of one host have
increasing `taken_at` (one `step` apart), so none is a resend.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

HEALTHY = {
    "disk_usage": 45.0,
    "memory_usage": 50.0,
    "cpu_usage": 25.0,
    "dns_latency_ms": 18.0,
    "firewall_change_requested": 0,
}
PROBLEM = {**HEALTHY, "disk_usage": 97.0}


@dataclass
class Agent:
    name: str
    key: str
    problem: bool | dict  # a problem host's readings: PROBLEM, or the metrics given here
    sent: int = 0  # samples so far: the next sample's offset from the start
    acked: int = 0  # samples the server stored (fleet jobs)

    def body(self, start: datetime, step: float, n: int) -> bytes:
        if isinstance(self.problem, dict):
            metrics = {**HEALTHY, **self.problem}
        else:
            metrics = PROBLEM if self.problem else HEALTHY
        samples = []
        for _ in range(n):
            taken_at = start + timedelta(seconds=self.sent * step)
            self.sent += 1
            samples.append({"host": self.name, "taken_at": taken_at.isoformat(), **metrics})
        return json.dumps(samples if n > 1 else samples[0]).encode()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    # (due, latency, lag, queued): lag is how long after it was due the generator's event
    # loop started the post, its own delay; queued, how long the post then waited for one of
    # the generator's connections, all busy with answers not yet come (the servers' delay).
    timeline: list[tuple[float, float, float, float]] = field(default_factory=list)
    collector_pauses: list[tuple[float, int, float]] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    samples_ok: int = 0
    duplicates: int = 0
    sent_all: int = 0  # warm-up included
    bad_bodies: int = 0

    def record(
        self,
        status: int,
        body: bytes,
        latency: float,
        n: int,
        at: float = 0.0,
        lag: float = 0.0,
        queued: float = 0.0,
    ) -> None:
        self.latencies.append(latency)
        self.timeline.append((at, latency, lag, queued))
        self.statuses[status] += 1
        if status == 201 and body.startswith(b'{"host"'):  # Warden's answer, sample by sample
            try:
                results = json.loads(body)["results"]
            except (ValueError, KeyError, TypeError):
                self.bad_bodies += 1
                return
            if len(results) != n:
                self.bad_bodies += 1
            self.samples_ok += sum(1 for result in results if not result.get("duplicate"))
            self.duplicates += sum(1 for result in results if result.get("duplicate"))
        elif 200 <= status < 300:
            self.samples_ok += n


class Connection:
    """One HTTP/1.1 connection, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                body = await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                body = await self._chunked()
            else:
                body = await self.reader.read()
                headers["connection"] = "close"
        except BaseException:
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def raw_post(path: str, host_header: str, key: str, body: bytes) -> bytes:
    if not body:  # a GET, such as /healthz
        return f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed_loop(job: dict[str, Any], agents: list[Agent], start: datetime) -> Tally:
    n = job["samples_per_request"]
    tally = Tally()
    turn = iter(range(1 << 62))
    begin = time.monotonic()
    counted_from = begin + job["warmup"]
    stop = counted_from + job["duration"]
    limit = job.get("requests")  # at most this many requests, then stop

    async def agent_loop() -> None:
        connection = Connection(job["host"], job["port"])
        while (now := time.monotonic()) < stop:
            index = next(turn)
            if limit is not None and index >= limit:
                break
            agent = agents[index % len(agents)]
            body = agent.body(start, 1, n) if n else b""
            raw = raw_post(job["path"], job["host_header"], agent.key, body)
            sent_at = time.perf_counter()
            try:
                status, body = await connection.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if now >= counted_from:
                    tally.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            tally.sent_all += 1
            if now >= counted_from:
                tally.record(status, body, time.perf_counter() - sent_at, n)
        connection.close()

    await asyncio.gather(*(agent_loop() for _ in range(job["connections"])))
    tally.elapsed = min(stop, time.monotonic()) - counted_from  # type: ignore[attr-defined]
    return tally


async def fleet(job: dict[str, Any], agents: list[Agent], start: datetime) -> Tally:
    """Each agent posts every `period` s at its own phase; `connections` bounds concurrency.

    With `poll_port`, every agent also holds a long poll (`poll_wait` s, renewed at once)
    and, given an action, reports it done at once; a problem host given an action to
    run is healed (its next readings are healthy).
    """
    n, period = job["samples_per_request"], job["period"]
    tally = Tally()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(job["connections"]):
        pool.put_nowait(Connection(job["host"], job["port"]))
    begin = time.monotonic() + 0.5
    tally.began_at = time.time() + 0.5  # type: ignore[attr-defined]
    stop = begin + job["duration"]
    step = period / n  # one sample every `step` s of the agent's (simulated) clock
    tasks: set[asyncio.Task] = set()
    polls = Counter()

    async def post(agent: Agent, due: float) -> None:
        began = time.monotonic()
        raw = raw_post(job["path"], job["host_header"], agent.key, agent.body(start, step, n))
        connection = await pool.get()
        try:
            written = time.monotonic()
            status, body = await connection.request(raw)
            latency = time.monotonic() - due
            tally.record(status, body, latency, n, due - begin, began - due, written - began)
            if status == 201:
                agent.acked += sum(1 for r in json.loads(body)["results"] if not r["duplicate"])
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.errors[type(exc).__name__] += 1
        finally:
            pool.put_nowait(connection)

    async def hold_poll(agent: Agent) -> None:
        connection = Connection(job["host"], job["poll_port"])
        request = (
            f"GET /api/v1/agent/actions?wait={job['poll_wait']} HTTP/1.1\r\n"
            f"Host: {job['host_header']}\r\nAuthorization: Bearer {agent.key}\r\n\r\n"
        ).encode()
        await asyncio.sleep(random.uniform(0, job["poll_wait"]))  # renewals spread evenly
        while time.monotonic() < stop:
            try:
                status, body = await connection.request(request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                polls[f"error {type(exc).__name__}"] += 1
                await asyncio.sleep(1)
                continue
            polls[f"poll {status}"] += 1
            if status != 200:
                await asyncio.sleep(1)
                continue
            for action in json.loads(body)["actions"]:
                if action["kind"] == "run":
                    agent.problem = False  # the fix worked
                polls[f"action {action['kind']}"] += 1
                result = json.dumps({"token": action["token"], "ok": True, "output": "done"})
                report = raw_post(
                    f"/api/v1/agent/actions/{action['execution_id']}/result",
                    job["host_header"],
                    agent.key,
                    result.encode(),
                )
                try:
                    report_status, _ = await connection.request(report)
                    polls[f"report {report_status}"] += 1
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    polls[f"report error {type(exc).__name__}"] += 1
        connection.close()

    pollers = (
        [asyncio.create_task(hold_poll(agent)) for agent in agents] if job.get("poll_port") else []
    )
    # Due times: agent i at begin + phase_i + k * period, phases spread evenly.
    schedule = sorted(
        (begin + (i / len(agents)) * period + k * period, i)
        for i in range(len(agents))
        for k in range(int(job["duration"] / period) + 1)
        if (i / len(agents)) * period + k * period < job["duration"]
    )
    # The generator's own collector: what was made so far (10,000 agents, their connections
    # and polls) is frozen out of its way, and each pass it still makes is timed, so that a
    # pause of the generator is told from one of the servers.
    gc.collect()
    gc.freeze()
    started: list[float] = []

    def time_collections(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.monotonic()]
        elif started:
            pause = time.monotonic() - started[0]
            tally.collector_pauses.append((started[0] - begin, info["generation"], pause))

    gc.callbacks.append(time_collections)
    for due, i in schedule:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(post(agents[i], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*list(tasks))
    gc.callbacks.remove(time_collections)
    tally.elapsed = max(time.monotonic(), stop) - begin  # type: ignore[attr-defined]
    for poller in pollers:
        poller.cancel()
    await asyncio.gather(*pollers, return_exceptions=True)
    tally.polls = polls  # type: ignore[attr-defined]
    return tally


def run(job: dict[str, Any]) -> dict[str, Any]:
    agents = [Agent(name, key, problem, sent) for name, key, problem, sent in job["agents"]]
    start = datetime.fromisoformat(job["start"]).astimezone(UTC)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    tally = asyncio.run((fleet if job["kind"] == "fleet" else closed_loop)(job, agents, start))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = tally.elapsed  # type: ignore[attr-defined]
    ok = sum(count for status, count in tally.statuses.items() if 200 <= status < 300)
    return {
        "requests": sum(tally.statuses.values()),
        "requests_with_warmup": tally.sent_all or sum(tally.statuses.values()),
        "ok": ok,
        "non_2xx": {str(s): c for s, c in tally.statuses.items() if not 200 <= s < 300},
        "errors": dict(tally.errors),
        "bad_bodies": tally.bad_bodies,
        "samples_ok": tally.samples_ok,
        "duplicates": tally.duplicates,
        "elapsed": elapsed,
        "requests_per_s": ok / elapsed if elapsed else 0.0,
        "samples_per_s": tally.samples_ok / elapsed if elapsed else 0.0,
        "p50_ms": percentile(tally.latencies, 0.50) * 1000,
        "p90_ms": percentile(tally.latencies, 0.90) * 1000,
        "p99_ms": percentile(tally.latencies, 0.99) * 1000,
        "max_ms": max(tally.latencies, default=0.0) * 1000,
        "client_cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime)
        - (cpu_before.ru_utime + cpu_before.ru_stime),
        "agents_sent": {agent.name: agent.sent for agent in agents},
        "agents_acked": {agent.name: agent.acked for agent in agents},
        "polls": dict(getattr(tally, "polls", {})),
        "by_minute": by_minute(tally.timeline),
        "began_at": getattr(tally, "began_at", None),
        "slowest": sorted(tally.timeline, key=lambda item: -item[1])[:50],
        "collector_pauses": sorted(tally.collector_pauses, key=lambda item: -item[2])[:20],
    }


def by_minute(timeline: list[tuple[float, float, float, float]]) -> list[dict[str, float]]:
    """p50 and p99 latency (ms) of the requests due in each minute of a fleet job."""
    minutes: dict[int, list[tuple[float, float, float]]] = {}
    for at, latency, lag, queued in timeline:
        minutes.setdefault(int(at // 60), []).append((latency, lag, queued))
    return [
        {
            "minute": minute,
            "requests": len(values),
            "p50_ms": percentile([latency for latency, _, _ in values], 0.5) * 1000,
            "p99_ms": percentile([latency for latency, _, _ in values], 0.99) * 1000,
            "lag_p99_ms": percentile([lag for _, lag, _ in values], 0.99) * 1000,
            "queued_p99_ms": percentile([queued for _, _, queued in values], 0.99) * 1000,
        }
        for minute, values in sorted(minutes.items())
    ]


if __name__ == "__main__":
    print(json.dumps(run(json.load(sys.stdin))))
