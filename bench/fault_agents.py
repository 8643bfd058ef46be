"""Agents for bench/bench_faults.py: each keeps its readings until Warden acknowledges them.

Run as its own process: it reads a job as JSON on stdin and prints the result as JSON on
stdout. Every host takes a reading every `period` seconds at its own phase and posts every
reading not yet acknowledged (oldest first, at most `max_batch`), as the real agent's spool
does: a post that fails (an error status, a timeout of `timeout` seconds, a refused
connection) is sent again with the next reading, so a reading is lost only if Warden
acknowledged it and did not keep it. Every host also holds a long poll for its actions
and reports each as done at once. A problem host shows its problem until it is sent the
fix, then is healthy for `relapse` seconds and shows it again.

After `duration` seconds every agent sends what it still holds until acknowledged (for
at most `flush` seconds). The result: every request (when, what, status or error,
latency), the readings each host had acknowledged, and what each agent was sent to run.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import HEALTHY, Connection, raw_post
from warden_agent.argv import argv_digest

PROBLEM = {**HEALTHY, "disk_usage": 97.0}


class Agent:
    def __init__(self, name: str, key: str, problem: bool, job: dict[str, Any]) -> None:
        self.name, self.key, self.job = name, key, job
        self.problem_until_fixed = problem
        self.healthy_until = 0.0
        self.pending: list[dict[str, Any]] = []  # readings not yet acknowledged
        self.acked: set[str] = set()  # taken_at of every reading Warden acknowledged
        self.ran: dict[int, int] = defaultdict(int)  # execution id: runs it was sent
        self.rolled_back_never_ran: list[int] = []

    def read(self, now: float) -> None:
        problem = self.problem_until_fixed and now >= self.healthy_until
        taken_at = datetime.now(UTC).isoformat()
        self.pending.append(
            {"host": self.name, "taken_at": taken_at, **(PROBLEM if problem else HEALTHY)}
        )

    def fixed(self, now: float) -> None:
        self.healthy_until = now + self.job["relapse"]


async def run(job: dict[str, Any]) -> dict[str, Any]:
    agents = [Agent(name, key, problem, job) for name, key, problem in job["agents"]]
    requests: list[tuple[float, str, str, float]] = []  # (sent, kind, status, latency)
    begin = time.time()
    stop_readings = begin + job["duration"]

    async def request(connection: Connection, kind: str, raw: bytes) -> tuple[int, bytes] | None:
        sent = time.time()
        timeout = job["timeout"] + (job["poll_wait"] if kind == "poll" else 0)
        try:
            status, body = await asyncio.wait_for(connection.request(raw), timeout)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            connection.close()
            requests.append((sent, kind, type(exc).__name__, time.time() - sent))
            return None
        requests.append((sent, kind, str(status), time.time() - sent))
        return status, body

    async def post(agent: Agent, connection: Connection) -> None:
        batch = agent.pending[: job["max_batch"]]
        body = json.dumps(batch).encode()
        answer = await request(
            connection, "post", raw_post("/api/v1/metrics", "localhost", agent.key, body)
        )
        if answer and answer[0] == 201:
            sent = {sample["taken_at"] for sample in batch}
            agent.acked |= sent
            agent.pending = [s for s in agent.pending if s["taken_at"] not in sent]

    async def reading_loop(agent: Agent, phase: float) -> None:
        connection = Connection(job["host"], job["port"])
        await asyncio.sleep(phase)
        while time.time() < stop_readings:
            agent.read(time.time())
            await post(agent, connection)
            await asyncio.sleep(
                max(0.0, job["period"] - (time.time() - begin - phase) % job["period"])
            )
        deadline = time.time() + job["flush"]
        while agent.pending and time.time() < deadline:
            await post(agent, connection)
            if agent.pending:
                await asyncio.sleep(1)
        connection.close()

    async def poll_loop(agent: Agent) -> None:
        connection = Connection(job["host"], job["port"])
        poll = (
            f"GET /api/v1/agent/actions?wait={job['poll_wait']} HTTP/1.1\r\n"
            f"Host: localhost\r\nAuthorization: Bearer {agent.key}\r\n\r\n"
        ).encode()
        await asyncio.sleep(random.uniform(0, 2))
        while time.time() < stop_readings:
            answer = await request(connection, "poll", poll)
            if not answer or answer[0] != 200:
                await asyncio.sleep(1)
                continue
            for action in json.loads(answer[1])["actions"]:
                execution_id = action["execution_id"]
                if action["kind"] == "run":
                    agent.ran[execution_id] += 1
                    agent.fixed(time.time())
                elif execution_id not in agent.ran:
                    agent.rolled_back_never_ran.append(execution_id)
                argv = action.get("argv", [])
                result = {
                    "token": action["token"],
                    "ok": True,
                    "output": "done",
                    "argv": argv,
                    "argv_digest": argv_digest(argv),
                    "exit_code": 0,
                }
                path = f"/api/v1/agent/actions/{execution_id}/result"
                for _ in range(10):  # a result is kept until Warden has it, as the agent does
                    reported = await request(
                        connection,
                        "report",
                        raw_post(path, "localhost", agent.key, json.dumps(result).encode()),
                    )
                    if reported and reported[0] < 500:
                        break
                    await asyncio.sleep(1)
        connection.close()

    tasks = [reading_loop(agent, job["period"] * i / len(agents)) for i, agent in enumerate(agents)]
    tasks += [poll_loop(agent) for agent in agents]
    await asyncio.gather(*tasks)
    return {
        "began_at": begin,
        "requests": requests,
        "acked": {agent.name: sorted(agent.acked) for agent in agents},
        "unacknowledged": sum(len(agent.pending) for agent in agents),
        "ran_twice": sum(1 for agent in agents for n in agent.ran.values() if n > 1),
        "runs": sum(len(agent.ran) for agent in agents),
        "rolled_back_never_ran": sum(len(agent.rolled_back_never_ran) for agent in agents),
    }


def ceiling(job: dict[str, Any]) -> float:
    """Requests per second this client manages against a trivial endpoint (its own limit)."""

    async def closed_loop() -> int:
        done = 0
        stop = time.monotonic() + job["seconds"]

        async def one() -> None:
            nonlocal done
            connection = Connection(job["host"], job["port"])
            while time.monotonic() < stop:
                await connection.request(raw_post(job["path"], "localhost", "", b""))
                done += 1
            connection.close()

        await asyncio.gather(*(one() for _ in range(job["connections"])))
        return done

    return asyncio.run(closed_loop()) / job["seconds"]


if __name__ == "__main__":
    job = json.load(sys.stdin)
    if job.get("kind") == "ceiling":
        print(json.dumps({"requests_per_s": ceiling(job)}))
    else:
        print(json.dumps(asyncio.run(run(job))))
