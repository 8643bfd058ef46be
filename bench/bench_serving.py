"""Warden's ingest through real servers, beside the design's floor, on one PostgreSQL.

For each server arrangement (bench/servers.py: gunicorn sync workers, gunicorn with
uvicorn workers) it starts Warden's production command (web, plus a qcluster on
Redis) and the floor (bench/floor_urls.py: DRF validate + bulk insert, no model)
under the same command, then drives both with bench/loadgen.py from a separate
process: 8 agents posting back to back over many hosts, 1 and 100 samples per
request, healthy and problem samples (disk 97%, counted on the host's open ticket),
Warden and floor alternated, median of the repetitions. It also times the first
problem on each host (opening a ticket and deciding) and a trivial GET, and reads
the CPU the servers and PostgreSQL spent per request.

    .venv/bin/python bench/bench_serving.py            # ~15 minutes
    .venv/bin/python bench/bench_serving.py --quick    # one short repetition
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import (
    ARRANGEMENTS,
    PYTHON,
    ROOT,
    Databases,
    Server,
    free_port,
    manage,
    register,
    throwaway_servers,
    warden_env,
)

CONNECTIONS = 8
HEALTHY_HOSTS = 1000
PROBLEM_HOSTS = 200
# Goals (issue 9), as ratios to the floor and to each other.
GOAL_RATIO = {1: 0.5, 100: 0.6}
GOAL_SAMPLES_PER_S_AT_100 = 10_000
GOAL_PROBLEM_COST = 2.0


@dataclass
class Fleet:
    """Hosts with keys and how many samples each has sent (its next taken_at)."""

    hosts: list[list[Any]]  # [name, key, problem, sent]

    def agents(self) -> list[list[Any]]:
        return self.hosts

    def advance(self, sent: dict[str, int]) -> None:
        for host in self.hosts:
            host[3] = sent.get(host[0], host[3])


def register_fleet(env: dict[str, str], prefix: str, count: int, problem: bool) -> Fleet:
    return Fleet([[name, key, problem, 0] for name, key in register(env, prefix, count)])


def process_tree_cpu(pid: int) -> float:
    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def postgres_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] in ("postgres", "postmaster") and process.info["cpu_times"]:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def load(
    server: Server,
    fleet: Fleet | None,
    *,
    samples: int,
    duration: float,
    warmup: float,
    path: str = "/api/v1/metrics",
    start: datetime,
    connections: int = CONNECTIONS,
    requests: int | None = None,
) -> dict[str, Any]:
    job = {
        "kind": "closed",
        "host": "127.0.0.1",
        "port": server.port,
        "host_header": "localhost",
        "path": path,
        "connections": connections,
        "duration": duration,
        "warmup": warmup,
        "samples_per_request": samples,
        "start": start.isoformat(),
        "agents": fleet.agents() if fleet else [["-", "-", False, 0]],
        "requests": requests,
    }
    server_cpu, pg_cpu = process_tree_cpu(server.process.pid), postgres_cpu()
    result = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "loadgen.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
    )
    outcome = json.loads(result.stdout)
    # CPU over the whole run, warm-up included: per request over all requests sent.
    outcome["server_cpu_s"] = process_tree_cpu(server.process.pid) - server_cpu
    outcome["postgres_cpu_s"] = postgres_cpu() - pg_cpu
    if fleet:
        fleet.advance(outcome.pop("agents_sent"))
    return outcome


def errors(outcome: dict[str, Any]) -> int:
    return (
        sum(outcome["non_2xx"].values()) + sum(outcome["errors"].values()) + outcome["bad_bodies"]
    )


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def row(label: str, warden: list[dict], floor: list[dict] | None, samples: int) -> dict:
    rate = "samples_per_s" if samples > 1 else "requests_per_s"
    warden_rate = median_of(warden, rate)
    floor_rate = median_of(floor, rate) if floor else None
    requests = sum(run["requests_with_warmup"] for run in warden) or 1
    return {
        "case": label,
        "unit": "samples/s" if samples > 1 else "requests/s",
        "warden": warden_rate,
        "floor": floor_rate,
        "ratio": warden_rate / floor_rate if floor_rate else None,
        "errors": sum(errors(run) for run in warden),
        "floor_errors": sum(errors(run) for run in floor) if floor else 0,
        "p50_ms": median_of(warden, "p50_ms"),
        "p99_ms": median_of(warden, "p99_ms"),
        "floor_p99_ms": median_of(floor, "p99_ms") if floor else None,
        "server_cpu_ms_per_request": 1000 * sum(r["server_cpu_s"] for r in warden) / requests,
        "postgres_cpu_ms_per_request": 1000 * sum(r["postgres_cpu_s"] for r in warden) / requests,
        "client_cpu_share": sum(r["client_cpu_s"] for r in warden)
        / sum(r["elapsed"] for r in warden),
        "warden_runs": warden,
        "floor_runs": floor,
    }


def print_table(arrangement: str, rows: list[dict]) -> None:
    print(f"\n{arrangement}: {ARRANGEMENTS[arrangement].format(workers='N')}")
    print(
        f"{'case':<34} {'unit':<11} {'warden':>9} {'floor':>9} {'ratio':>6} {'errors':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'cpu ms/req':>10} {'pg ms/req':>9}"
    )
    for r in rows:
        floor = f"{r['floor']:>9,.0f}" if r["floor"] else f"{'-':>9}"
        ratio = f"{r['ratio']:>6.2f}" if r["ratio"] else f"{'-':>6}"
        print(
            f"{r['case']:<34} {r['unit']:<11} {r['warden']:>9,.0f} {floor} {ratio} "
            f"{r['errors']:>7} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
            f"{r['server_cpu_ms_per_request']:>10.2f} {r['postgres_cpu_ms_per_request']:>9.2f}"
        )


def bench_arrangement(
    arrangement: str,
    workers: int,
    dbs: Databases,
    data_dir: Path,
    fleets: dict[str, Fleet],
    start: datetime,
    reps: int,
    duration: float,
) -> list[dict]:
    env = warden_env(dbs, data_dir)
    command = ARRANGEMENTS[arrangement].format(workers=workers)
    warden = Server(f"warden-{arrangement}", command, env, free_port())
    floor = Server(
        f"floor-{arrangement}",
        command,
        {**env, "DJANGO_SETTINGS_MODULE": "bench.floor_settings"},
        free_port(),
    )
    rows = []
    try:
        warden.wait_ready()
        floor.wait_ready()
        # Warm both up (imports, first queries, prepared statements), not counted.
        for server, fleet in ((warden, fleets["warden-healthy"]), (floor, fleets["floor-healthy"])):
            load(server, fleet, samples=1, duration=3, warmup=0, start=start)
        trivial = [
            load(warden, None, samples=0, duration=duration, warmup=1, path="/healthz", start=start)
            for _ in range(reps)
        ]
        rows.append(row("GET /healthz (trivial)", trivial, None, 0))
        for samples in (1, 100):
            for kind in ("healthy", "problem"):
                runs: dict[str, list[dict]] = {"warden": [], "floor": []}
                for rep in range(reps):
                    order = ("warden", "floor") if rep % 2 == 0 else ("floor", "warden")
                    for which in order:
                        server = warden if which == "warden" else floor
                        fleet = fleets[f"{which}-{kind}"]
                        runs[which].append(
                            load(
                                server,
                                fleet,
                                samples=samples,
                                duration=duration,
                                warmup=2,
                                start=start,
                            )
                        )
                label = f"POST {samples} {kind} sample{'s' if samples > 1 else ''}/request"
                rows.append(row(label, runs["warden"], runs["floor"], samples))
    finally:
        warden.stop()
        floor.stop()
    return rows


def open_tickets(dbs: Databases, data_dir: Path, fleet: Fleet, start: datetime) -> dict:
    """The first problem on each host opens its ticket and decides: timed on its own."""
    env = warden_env(dbs, data_dir)
    warden = Server(
        "warden-first-problem", ARRANGEMENTS["sync"].format(workers=4), env, free_port()
    )
    try:
        warden.wait_ready()
        job_fleet = Fleet([list(host) for host in fleet.hosts])
        outcome = load(
            warden,
            job_fleet,
            samples=1,
            duration=600,
            warmup=0,
            start=start,
            requests=len(fleet.hosts),
        )
    finally:
        warden.stop()
    fleet.advance({host[0]: host[3] for host in job_fleet.hosts})
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 4-second repetition per case")
    parser.add_argument("--arrangements", default="sync,uvicorn")
    parser.add_argument("--sync-workers", type=int, default=4)
    parser.add_argument("--uvicorn-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    reps, duration = (1, 4.0) if args.quick else (5, 5.0)
    # Samples are stamped from ten days ago, one second apart per host: never resent.
    start = datetime.now(UTC) - timedelta(days=10)
    report: dict[str, Any] = {"machine": {"cpus": psutil.cpu_count()}, "arrangements": {}}
    with throwaway_servers() as dbs, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = warden_env(dbs, data_dir)
        print("Preparing: migrate, train and approve the model, register hosts ...", flush=True)
        manage(env, "migrate", "--noinput")
        manage(env, "train_severity_model", "--approve")
        fleets = {
            "warden-healthy": register_fleet(env, "ok", HEALTHY_HOSTS, False),
            "warden-problem": register_fleet(env, "disk", PROBLEM_HOSTS, True),
            "floor-healthy": register_fleet(env, "floor-ok", HEALTHY_HOSTS, False),
            "floor-problem": register_fleet(env, "floor-disk", PROBLEM_HOSTS, True),
        }
        qcluster = Server("qcluster", "manage.py qcluster", env, None)
        try:
            first = open_tickets(dbs, data_dir, fleets["warden-problem"], start)
            report["first_problem"] = first
            print(
                f"First problem on each of {PROBLEM_HOSTS} hosts (opens a ticket, decides, "
                f"queues an execution or asks people; sync x{args.sync_workers}, "
                f"{CONNECTIONS} agents): {first['requests_per_s']:,.0f} requests/s, "
                f"p50 {first['p50_ms']:.1f} ms, p99 {first['p99_ms']:.1f} ms, "
                f"errors {errors(first)}"
            )
            for arrangement in args.arrangements.split(","):
                workers = args.sync_workers if arrangement == "sync" else args.uvicorn_workers
                rows = bench_arrangement(
                    arrangement, workers, dbs, data_dir, fleets, start, reps, duration
                )
                report["arrangements"][arrangement] = {"workers": workers, "rows": rows}
                print_table(arrangement, rows)
                judge(rows)
        finally:
            qcluster.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


def judge(rows: list[dict]) -> None:
    """Print each goal of issue 9 met or not."""
    by_case = {r["case"]: r for r in rows}
    for samples in (1, 100):
        suffix = "s" if samples > 1 else ""
        healthy = by_case[f"POST {samples} healthy sample{suffix}/request"]
        problem = by_case[f"POST {samples} problem sample{suffix}/request"]
        cost = healthy["warden"] / problem["warden"]
        print(
            f"  {samples:>3}/request: healthy {healthy['ratio']:.2f}x floor, problem "
            f"{problem['ratio']:.2f}x floor (goal >= {GOAL_RATIO[samples]}); a problem sample "
            f"costs {cost:.2f}x a healthy one (goal <= {GOAL_PROBLEM_COST}); errors "
            f"{healthy['errors'] + problem['errors']} (goal 0)"
        )
    at_100 = by_case["POST 100 healthy samples/request"]["warden"]
    print(f"  100/request: {at_100:,.0f} samples/s (goal >= {GOAL_SAMPLES_PER_S_AT_100:,})")


if __name__ == "__main__":
    main()
