"""10,000 hosts for 10 minutes against the production arrangement on this machine.

The arrangement (README: Running in production): nginx in front, the web process
(gunicorn sync workers) for the API, the live process (one uvicorn worker) for the
agents' long polls, a qcluster, PostgreSQL and Redis (bench/servers.py). Every host
takes a reading every 10 s and posts them six at a time, once a minute, at its own
phase (bench/loadgen.py's fleet job), and holds a long poll for actions, its first one
at a random moment of the poll's wait (as agents start: warden_agent's start jitter);
1% of the hosts have a problem (disk, memory, CPU: the policies heal them; DNS,
firewall: people approve) and heal once their agent runs the action.

Reports ingest latency (from when a post was due, so a backlog counts) in every minute
against the goal, errors, samples acknowledged against samples stored (lost or
duplicated), what the engine did against the policies' limits, where the machine's CPU
went and what each role costs per 1,000 hosts. Beside them, the load generator's own
ceiling: the same client against nginx answering a constant, which must be well above
the posts and polls the fleet sends.

    .venv/bin/python bench/fleet_simulation.py                   # 10,000 hosts, 10 minutes
    .venv/bin/python bench/fleet_simulation.py --quick           # 1,000 hosts, 1.5 minutes
    .venv/bin/python bench/fleet_simulation.py --hosts 2000 --minutes 2

What a second machine adds: bench/bench_serving.py --scaling.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import (
    PYTHON,
    ROOT,
    ConstantFront,
    manage,
    prepare_database,
    production_stack,
    register,
    throwaway_servers,
    tree_cpu,
    warden_env,
)

PROBLEMS = {  # category: (metrics, share of the problem hosts)
    "disk": ({"disk_usage": 97.0}, 0.4),
    "memory": ({"memory_usage": 97.0}, 0.2),
    "cpu": ({"cpu_usage": 99.0}, 0.2),
    "dns": ({"dns_latency_ms": 650.0}, 0.1),
    "firewall": ({"firewall_change_requested": 1}, 0.1),
}
GOAL_P99_MS = 250


def cpu_by_role(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each role's process tree (PostgreSQL and Redis among them:
    the ones this run started, not others on the machine)."""
    return {role: tree_cpu(pid) for role, pid in pids.items() if pid is not None}


def generator_ceiling(work: Path, agents: list[list], connections: int) -> float:
    """Requests per second the load generator drives against nginx answering a constant:
    its own ceiling here, to compare with the posts and polls the fleet needs."""
    front = ConstantFront(work)
    job = {
        "kind": "closed",
        "host": "127.0.0.1",
        "port": front.port,
        "host_header": "localhost",
        "path": "/api/v1/metrics",
        "connections": connections,
        "duration": 5,
        "warmup": 1,
        "samples_per_request": 6,
        "start": datetime.now(UTC).isoformat(),
        "agents": agents[:1000],
    }
    try:
        result = subprocess.run(
            [PYTHON, str(ROOT / "bench" / "loadgen.py")],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        front.stop()
    return json.loads(result.stdout)["requests_per_s"]


class CpuByMinute(threading.Thread):
    """Cores each role used in each minute of the run (where a backlog's CPU went)."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.cores: list[dict[str, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        before = cpu_by_role(self.pids)
        while not self.done.wait(60):
            after = cpu_by_role(self.pids)
            self.cores.append({role: (after[role] - before.get(role, 0)) / 60 for role in after})
            before = after

    def finish(self) -> None:
        self.done.set()
        self.join()


ANALYSIS = """
import json
from collections import Counter
from datetime import timedelta
from django.db.models import Count
from django.utils import timezone
from governance.models import ApprovalRequest, Decision, Policy
from remediation.models import Execution, Ticket
from scoring.models import MetricSample
since = timezone.now() - timedelta(hours=1)
stored = dict(MetricSample.objects.values_list("host__name").annotate(n=Count("id")))
executions = Execution.objects.filter(created_at__gte=since).exclude(state="cancelled")
per_category = Counter(executions.values_list("runbook__category", flat=True))
limits = dict(Policy.objects.filter(enabled=True).values_list("category", "max_actions_per_hour"))
print(json.dumps({
    "stored": stored,
    "decisions": dict(Counter(Decision.objects.values_list("outcome", flat=True))),
    "tickets": dict(Counter(Ticket.objects.values_list("status", flat=True))),
    "executions": dict(Counter(Execution.objects.values_list("state", flat=True))),
    "executions_per_category": dict(per_category),
    "max_actions_per_hour": limits,
    "unapproved_risky_executions": Execution.objects.filter(
        runbook__category__in=["dns", "firewall"], approval_request__isnull=True
    ).count(),
    "approvals": dict(Counter(ApprovalRequest.objects.values_list("status", flat=True))),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="1,000 hosts for 1.5 minutes")
    parser.add_argument("--problem-share", type=float, default=0.01)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    if args.quick:
        args.hosts, args.minutes = 1000, 1.5
    n_problem = max(len(PROBLEMS), int(args.hosts * args.problem_share))
    with throwaway_servers("warden_fleet") as dbs, tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = warden_env(dbs, work)
        started = time.monotonic()
        print(f"Preparing: migrate, model, {args.hosts:,} hosts ...", flush=True)
        prepare_database(env)
        hosts = register(env, "host", args.hosts)
        print(f"  ready in {time.monotonic() - started:.0f} s", flush=True)
        problems = [
            metrics
            for metrics, share in PROBLEMS.values()
            for _ in range(max(1, round(n_problem * share)))
        ]
        # The problem hosts spread evenly through the fleet (so through the minute).
        stride = args.hosts // len(problems)
        agents = []
        for i, (name, key) in enumerate(hosts):
            problem = (
                problems[i // stride] if i % stride == 0 and i < stride * len(problems) else False
            )
            agents.append([name, key, problem, 0])
        with production_stack(env, work, web_workers=args.web_workers, warm=True) as stack:
            pids = {**stack.pids(), "postgres": dbs.postgres_pid, "redis": dbs.redis_pid}
            ceiling = generator_ceiling(work, agents, 64)
            duration = args.minutes * 60
            job = {
                "kind": "fleet",
                "host": "127.0.0.1",
                "port": stack.front.port,
                "poll_port": stack.front.port,
                "poll_wait": 50,
                "host_header": "localhost",
                "path": "/api/v1/metrics",
                "connections": 64,
                "duration": duration,
                "period": 60.0,
                "samples_per_request": 6,
                # readings 10 s apart, the newest a minute old when the run ends
                "start": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                "agents": agents,
            }
            print(
                f"Running {args.hosts:,} agents ({sum(1 for a in agents if a[2])} with a problem) "
                f"for {args.minutes:g} min: a batch of 6 a minute each, long polls held ...",
                flush=True,
            )
            cpu_before = cpu_by_role(pids)
            system_before = psutil.cpu_times()
            minutes = CpuByMinute(pids)
            minutes.start()
            result = subprocess.run(
                [PYTHON, str(ROOT / "bench" / "loadgen.py")],
                input=json.dumps(job),
                capture_output=True,
                text=True,
                check=True,
            )
            outcome = json.loads(result.stdout)
            minutes.finish()
            outcome["cpu_by_minute"] = minutes.cores
            outcome["generator_ceiling"] = ceiling
            cpu_after = cpu_by_role(pids)
            system_after = psutil.cpu_times()
        analysis = json.loads(manage(env, "shell", "-c", ANALYSIS).splitlines()[-1])
        report(args, outcome, analysis, cpu_before, cpu_after, system_before, system_after)
        if args.json:
            args.json.write_text(json.dumps({"loadgen": outcome, "analysis": analysis}, indent=1))


def report(args, outcome, analysis, cpu_before, cpu_after, system_before, system_after) -> None:
    acked = outcome["agents_acked"]
    stored = analysis["stored"]
    lost = sum(max(n - stored.get(name, 0), 0) for name, n in acked.items())
    extra = sum(max(stored.get(name, 0) - n, 0) for name, n in acked.items())
    elapsed = outcome["elapsed"]
    errors = sum(outcome["non_2xx"].values()) + sum(outcome["errors"].values())
    print(
        f"\nIngest: {outcome['requests']:,} posts ({outcome['requests_per_s']:.0f}/s, "
        f"{outcome['samples_per_s']:,.0f} samples/s), latency from due p50 "
        f"{outcome['p50_ms']:.0f} ms, p99 {outcome['p99_ms']:.0f} ms (goal < {GOAL_P99_MS}), "
        f"max {outcome['max_ms']:.0f} ms; errors {errors} {outcome['non_2xx'] or ''}"
        f"{outcome['errors'] or ''}"
    )
    print(
        "  by minute (p50 / p99 ms): "
        + ", ".join(
            f"{m['minute'] + 1}: {m['p50_ms']:.0f} / {m['p99_ms']:.0f}"
            for m in outcome["by_minute"]
        )
    )
    print(
        "  p99 by minute (ms) of the generator's own delay in starting a post / of its wait "
        "for a connection busy with an unanswered post: "
        + ", ".join(
            f"{m['minute'] + 1}: {m['lag_p99_ms']:.0f} / {m['queued_p99_ms']:.0f}"
            for m in outcome["by_minute"]
        )
    )
    slowest = outcome["slowest"]
    if slowest:

        def span(index: int) -> str:
            values = [entry[index] * 1000 for entry in slowest]
            return f"{min(values):.0f}-{max(values):.0f} ms"

        print(
            f"  the 50 slowest posts: due between {min(e[0] for e in slowest):.1f} and "
            f"{max(e[0] for e in slowest):.1f} s, {span(1)}, of which the generator's own "
            f"delay {span(2)} and the wait for a connection {span(3)}"
        )
    pauses = outcome["collector_pauses"]
    if pauses:
        at, generation, longest = pauses[0]
        print(
            f"  the generator's longest collector pause: {longest * 1000:.0f} ms "
            f"(generation {generation}, at {at:.1f} s)"
        )
    worst = max((m["p99_ms"] for m in outcome["by_minute"]), default=0.0)
    met = "met" if worst < GOAL_P99_MS and not errors else "NOT met"
    print(
        f"  worst minute's p99 {worst:.0f} ms: goal (< {GOAL_P99_MS} ms in every minute, the "
        f"first included, and 0 errors) {met}"
    )
    needed = args.hosts / 60 + args.hosts / 50  # posts once a minute, polls renewed every 50 s
    print(
        f"Load generator: its ceiling here {outcome['generator_ceiling']:,.0f} requests/s "
        f"(bench/loadgen.py against nginx answering a constant), the fleet sends about "
        f"{needed:,.0f}/s ({outcome['generator_ceiling'] / needed:.1f}x headroom); it used "
        f"{outcome['client_cpu_s'] / elapsed:.2f} of a core"
    )
    for minute, cores in enumerate(outcome.get("cpu_by_minute", []), start=1):
        print(
            f"  minute {minute} cores: "
            + ", ".join(f"{role} {used:.2f}" for role, used in sorted(cores.items()))
        )
    print(
        f"Samples: {sum(acked.values()):,} acknowledged, {sum(stored.values()):,} stored; "
        f"lost {lost}, duplicated {extra}; {outcome['duplicates']} answered as resent"
    )
    print(f"Long polls: {outcome['polls']}")
    print(
        f"Engine: decisions {analysis['decisions']}, tickets {analysis['tickets']}, "
        f"executions {analysis['executions']}, approvals {analysis['approvals']}"
    )
    within = all(
        count <= analysis["max_actions_per_hour"].get(category, 0)
        for category, count in analysis["executions_per_category"].items()
    )
    print(
        f"Limits: executions per category in the hour {analysis['executions_per_category']} "
        f"against max_actions_per_hour {analysis['max_actions_per_hour']}: "
        f"{'within' if within else 'EXCEEDED'}; risky executions without approval: "
        f"{analysis['unapproved_risky_executions']}"
    )
    busy = sum(
        getattr(system_after, f) - getattr(system_before, f)
        for f in ("user", "system", "nice", "irq", "softirq")
    )
    total = busy + (system_after.idle - system_before.idle)
    shares = {
        role: (cpu_after.get(role, 0) - cpu_before.get(role, 0)) / elapsed
        for role in sorted(cpu_after)
    }
    shares["load generator"] = outcome["client_cpu_s"] / elapsed
    print(
        f"CPU: machine {100 * busy / total:.0f}% busy of {psutil.cpu_count()} cores; cores used: "
        + ", ".join(f"{role} {share:.2f}" for role, share in shares.items())
    )
    thousands = args.hosts / 1000
    servers = {role: share for role, share in shares.items() if role != "load generator"}
    print(
        "Cost per 1,000 hosts (CPU seconds a minute): "
        + ", ".join(f"{role} {60 * share / thousands:.1f}" for role, share in servers.items())
        + f"; all of Warden's roles {60 * sum(servers.values()) / thousands:.1f} "
        f"({sum(servers.values()) / thousands:.3f} of a core)"
    )


if __name__ == "__main__":
    main()
