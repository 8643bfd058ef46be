"""Agents' long polls through the production arrangement: what an idle poll costs, how fast
an action reaches its agent.

Starts PostgreSQL and Redis (bench/servers.py), the web process (gunicorn sync
workers: POST /api/v1/metrics), the live process (one uvicorn worker: the long polls)
and a qcluster, then:

1. holds 1,000, then 5,000, then 10,000 idle polls (one per host, `wait` 55 s) on the
   one live process and reads its resident memory, threads and PostgreSQL
   connections at each step;
2. for hosts with a poll waiting, posts a problem sample (disk, memory or CPU, all
   AUTO_HEAL under the default policies) and times the decision reaching the agent:
   from the metrics response (the decision committed) to the poll's answer carrying
   the action (dispatch by the qcluster, a Redis announcement, the claim).

    .venv/bin/python bench/bench_long_poll.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import Connection
from bench.servers import (
    ARRANGEMENTS,
    LIVE_COMMAND,
    PYTHON,
    ROOT,
    Server,
    free_port,
    manage,
    prepare_database,
    register,
    throwaway_servers,
    warden_env,
)

POLL_WAIT = 55
PROBLEMS = {
    "disk": {"disk_usage": 97.0},
    "memory": {"memory_usage": 97.0},
    "cpu": {"cpu_usage": 99.0},
}
HEALTHY = {
    "disk_usage": 45.0,
    "memory_usage": 50.0,
    "cpu_usage": 25.0,
    "dns_latency_ms": 18.0,
    "firewall_change_requested": 0,
}


def poll_request(key: str, wait: float) -> bytes:
    return (
        f"GET /api/v1/agent/actions?wait={wait} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    ).encode()


def post_request(name: str, key: str, metrics: dict) -> bytes:
    body = json.dumps(
        {"host": name, "taken_at": datetime.now(UTC).isoformat(), **HEALTHY, **metrics}
    ).encode()
    return (
        f"POST /api/v1/metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def process_memory(pid: int) -> tuple[float, int]:
    """Resident MB and threads of the live process's workers (the master excluded)."""
    workers = psutil.Process(pid).children(recursive=True)
    return (
        sum(worker.memory_info().rss for worker in workers) / 2**20,
        sum(worker.num_threads() for worker in workers),
    )


def database_connections(env: dict[str, str]) -> int:
    script = (
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        '    c.execute("select count(*) from pg_stat_activity where datname = current_database()'
        " and application_name = ''\")\n"
        "    print(c.fetchone()[0])\n"
    )
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1]) - 1  # this query's own connection


async def hold_idle_polls(port: int, hosts: list[list[str]]) -> list[asyncio.StreamWriter]:
    """Open one poll per host and leave it waiting; returns the writers to close them."""
    writers = []
    for start in range(0, len(hosts), 200):
        batch = hosts[start : start + 200]
        opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in batch))
        for (_, writer), (_, key) in zip(opened, batch, strict=True):
            writer.write(poll_request(key, POLL_WAIT))
            writers.append(writer)
        await asyncio.sleep(0.05)
    return writers


async def idle_poll_steps(live: Server, env: dict[str, str], hosts: list[list[str]]) -> list[dict]:
    steps = []
    baseline_mb, baseline_threads = process_memory(live.process.pid)
    writers: list[asyncio.StreamWriter] = []
    for target in (1000, 5000, 10_000):
        if target > len(hosts):
            break
        writers += await hold_idle_polls(live.port, hosts[len(writers) : target])
        await asyncio.sleep(3)  # every poll authenticated, looked and waiting
        mb, threads = process_memory(live.process.pid)
        steps.append(
            {
                "polls": len(writers),
                "rss_mb": mb,
                "per_poll_kb": (mb - baseline_mb) * 1024 / len(writers),
                "threads": threads,
                "baseline_threads": baseline_threads,
                "database_connections": database_connections(env),
            }
        )
        print(
            f"  {len(writers):>6} idle polls: live worker {mb:,.0f} MB resident "
            f"({steps[-1]['per_poll_kb']:.1f} KB a poll over {baseline_mb:,.0f} MB idle), "
            f"{threads} threads (idle: {baseline_threads}), "
            f"{steps[-1]['database_connections']} PostgreSQL connections in all",
            flush=True,
        )
    for writer in writers:
        writer.close()
    await asyncio.sleep(2)
    return steps


async def decision_to_agent(web: Server, live: Server, hosts: list[list[str]]) -> list[float]:
    """Seconds from each AUTO_HEAL decision's commit to its agent's poll answer."""
    delays = []
    for i, (name, key) in enumerate(hosts):
        problem = list(PROBLEMS.values())[i % len(PROBLEMS)]
        poll = Connection("127.0.0.1", live.port)
        waiting = asyncio.create_task(poll.request(poll_request(key, POLL_WAIT)))
        await asyncio.sleep(0.3)  # the poll has looked and waits
        post = Connection("127.0.0.1", web.port)
        status, body = await post.request(post_request(name, key, problem))
        decided = time.monotonic()
        decision = json.loads(body)["results"][0]["decision"] if status == 201 else status
        poll_status, poll_body = await asyncio.wait_for(waiting, POLL_WAIT + 5)
        received = time.monotonic()
        actions = json.loads(poll_body)["actions"] if poll_status == 200 else []
        if decision != "AUTO_HEAL" or not actions:
            print(f"  {name}: decision {decision}, poll {poll_status} {actions}: not counted")
            continue
        delays.append(received - decided)
        post.close()
        poll.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000, help="idle polls at most")
    parser.add_argument("--decisions", type=int, default=30)
    args = parser.parse_args()
    with throwaway_servers() as dbs, tempfile.TemporaryDirectory() as tmp:
        env = warden_env(dbs, Path(tmp))
        print(f"Preparing: migrate, model, {args.hosts:,} hosts ...", flush=True)
        prepare_database(env)
        # The operator's limits, raised so each of these decisions may act automatically.
        manage(
            env,
            "shell",
            "-c",
            "from governance.models import Policy; "
            "Policy.objects.update(max_actions_per_hour=1000, blast_radius_max_percent=None, "
            "blast_radius_max_hosts=None)",
        )
        hosts = register(env, "poll", args.hosts)
        web = Server("web", ARRANGEMENTS["sync"].format(workers=4), env, free_port())
        live = Server("live", LIVE_COMMAND, env, free_port())
        qcluster = Server("qcluster", "manage.py qcluster", env, None)
        try:
            web.wait_ready()
            live.wait_ready()
            print("Idle long polls held by one live process (uvicorn, 1 worker):")
            steps = asyncio.run(idle_poll_steps(live, env, hosts))
            print(f"AUTO_HEAL decision to the agent's poll answer, {args.decisions} decisions:")
            delays = asyncio.run(decision_to_agent(web, live, hosts[: args.decisions]))
            ms = sorted(delay * 1000 for delay in delays)
            if ms:
                print(
                    f"  p50 {statistics.median(ms):.0f} ms, p90 {ms[int(0.9 * len(ms))]:.0f} ms, "
                    f"max {ms[-1]:.0f} ms over {len(ms)} (goal: p50 < 250 ms)"
                )
            print(json.dumps({"idle_polls": steps, "decision_to_agent_ms": ms}))
        finally:
            for server in (qcluster, live, web):
                server.stop()


if __name__ == "__main__":
    main()
