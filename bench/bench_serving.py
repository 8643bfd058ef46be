"""Warden's ingest through real servers, beside the design's floor, driven by wrk.

Under the production web command (bench/servers.py ARRANGEMENTS: gunicorn sync
workers; uvicorn workers on request) it starts Warden (with a qcluster on Redis) and
the floor (bench/floor_urls.py: DRF validate + bulk insert, psycopg pool, one OpenMP
thread, no model) on one throwaway PostgreSQL, and drives each with wrk (two threads,
8 connections, bench/wrk_agents.lua: every request from the next of 1,000 hosts, with
its key): 1 and 100 samples per request, healthy and problem samples (disk 97%,
counted on the host's open ticket), Warden and floor alternated, medians of the
repetitions. Beside them, in the same run:

- the generator's own ceiling: the same wrk script against nginx answering a
  constant (no Python at all), and against Warden's trivial GET /healthz under the
  same command; both must be well above the floor, or the floor measured wrk;
- the CPU that the servers, PostgreSQL and wrk itself spent per request (psutil);
- the first problem on each of 200 hosts (opening a ticket and deciding), once.

With --profile it instead times the stages of the 1-sample path (authentication,
parsing, model, statements, commit, answer, middleware, gunicorn) in each gunicorn
worker of Warden and of the floor, on the CPU clock (bench/profiled_gunicorn.py),
under the same wrk load, and prints where each millisecond goes beside the floor's.

    .venv/bin/python bench/bench_serving.py            # ~12 minutes
    .venv/bin/python bench/bench_serving.py --quick    # one 5-second repetition, ~4 minutes
    .venv/bin/python bench/bench_serving.py --profile  # the 1-sample path, stage by stage
    .venv/bin/python bench/bench_serving.py --scaling  # one web group on a core, then two

With --scaling it shows what a second machine adds: a group of web workers limited to
one core (taskset), then two such groups on the two cores, sharing one PostgreSQL and
Redis, each driven by its own wrk with a fleet agent's post (6 samples).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import (
    ARRANGEMENTS,
    PYTHON,
    ROOT,
    ConstantFront,
    Databases,
    Server,
    free_port,
    prepare_database,
    register,
    throwaway_servers,
    tree_cpu,
    warden_env,
)

WRK_SCRIPT = ROOT / "bench" / "wrk_agents.lua"
THREADS, CONNECTIONS = 2, 8
HEALTHY_HOSTS = 1000
PROBLEM_HOSTS = 200
# Goals (issue 23): Warden's rate as a share of the floor's, by samples per request.
GOAL_RATIO = {1: 0.8, 100: 1.0}


@dataclass
class Fleet:
    """Registered hosts, written as "name key" lines for wrk_agents.lua."""

    path: Path
    hosts: list[list[str]]


def register_fleet(env: dict[str, str], folder: Path, prefix: str, count: int) -> Fleet:
    hosts = register(env, prefix, count)
    path = folder / f"{prefix}.hosts"
    path.write_text("".join(f"{name} {key}\n" for name, key in hosts))
    return Fleet(path, hosts)


@dataclass
class Stamps:
    """Each run's first taken_at (epoch seconds): an hour after the previous run's, so a
    host's samples only get newer and none is a resend (wrk_agents.lua stamps them 10 ms
    apart from there: far under an hour in one run)."""

    next_epoch: int = field(
        default_factory=lambda: int((datetime.now(UTC) - timedelta(days=20)).timestamp())
    )

    def take(self) -> int:
        epoch, self.next_epoch = self.next_epoch, self.next_epoch + 3600
        return epoch


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(
    port: int,
    fleet: Fleet,
    stamps: Stamps,
    *,
    samples: int,
    duration: float,
    path: str = "/api/v1/metrics",
    method: str = "POST",
    problem: bool = False,
    measured: tuple[int, ...] = (),
    postgres_pid: int | None = None,
) -> dict[str, Any]:
    """One wrk run: its figures, and the CPU per request of the `measured` process trees,
    of PostgreSQL and of wrk itself."""
    command = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}{path}",
        "--",
        str(fleet.path),
        str(THREADS),
        str(samples),
        str(stamps.take()),
        method,
        "1" if problem else "0",
    ]
    servers_before, pg_before = sum(map(tree_cpu, measured)), tree_cpu(postgres_pid)
    wrk_before = children_cpu()  # wrk is the only child that ends meanwhile
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    wrk_cpu = children_cpu() - wrk_before
    servers_cpu = sum(map(tree_cpu, measured)) - servers_before
    pg_cpu = tree_cpu(postgres_pid) - pg_before
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    elapsed = outcome["duration_us"] / 1e6
    ok = sum(n for status, n in outcome["statuses"].items() if 200 <= int(status) < 300)
    requests = max(outcome["requests"], 1)
    return {
        **outcome,
        "elapsed": elapsed,
        "ok": ok,
        "errors": outcome["requests"] - ok + sum(outcome["errors"].values()),
        "requests_per_s": ok / elapsed,
        "samples_per_s": ok * samples / elapsed,
        "p50_ms": outcome["p50_us"] / 1000,
        "p99_ms": outcome["p99_us"] / 1000,
        "server_cpu_ms": 1000 * servers_cpu / requests,
        "postgres_cpu_ms": 1000 * pg_cpu / requests,
        "wrk_cpu_ms": 1000 * wrk_cpu / requests,
        "wrk_cores": wrk_cpu / elapsed,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def mean_of(runs: list[dict[str, Any]], key: str) -> float:
    """A per-request figure over all the runs' requests."""
    requests = sum(run["requests"] for run in runs) or 1
    return sum(run[key] * run["requests"] for run in runs) / requests


def row(label: str, samples: int, warden: list[dict], floor: list[dict] | None) -> dict:
    rate = "samples_per_s" if samples > 1 else "requests_per_s"
    warden_rate = median_of(warden, rate)
    floor_rate = median_of(floor, rate) if floor else None
    return {
        "case": label,
        "samples": samples,
        "unit": "samples/s" if samples > 1 else "requests/s",
        "warden": warden_rate,
        "floor": floor_rate,
        "ratio": warden_rate / floor_rate if floor_rate else None,
        "errors": sum(run["errors"] for run in warden),
        "floor_errors": sum(run["errors"] for run in floor) if floor else 0,
        "duplicates": sum(run["duplicates"] for run in warden),
        "p50_ms": median_of(warden, "p50_ms"),
        "p99_ms": median_of(warden, "p99_ms"),
        "server_cpu_ms": mean_of(warden, "server_cpu_ms"),
        "postgres_cpu_ms": mean_of(warden, "postgres_cpu_ms"),
        "wrk_cores": median_of(warden, "wrk_cores"),
        "floor_server_cpu_ms": mean_of(floor, "server_cpu_ms") if floor else None,
        "floor_postgres_cpu_ms": mean_of(floor, "postgres_cpu_ms") if floor else None,
        "warden_runs": warden,
        "floor_runs": floor,
    }


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'case':<36} {'unit':<10} {'warden':>8} {'floor':>8} {'ratio':>6} {'goal':>5} "
        f"{'err':>4} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms/req':>11} {'pg ms/req':>10} "
        f"{'wrk cores':>9}"
    )
    for r in rows:
        floor = f"{r['floor']:>8,.0f}" if r["floor"] else f"{'-':>8}"
        ratio = f"{r['ratio']:>6.2f}" if r["ratio"] else f"{'-':>6}"
        goal = f"{GOAL_RATIO[r['samples']]:>5.1f}" if r["floor"] else f"{'':>5}"
        cpu = f"{r['server_cpu_ms']:.2f}"
        pg = f"{r['postgres_cpu_ms']:.2f}"
        if r["floor"]:  # the floor's beside Warden's
            cpu += f"/{r['floor_server_cpu_ms']:.2f}"
            pg += f"/{r['floor_postgres_cpu_ms']:.2f}"
        print(
            f"{r['case']:<36} {r['unit']:<10} {r['warden']:>8,.0f} {floor} {ratio} {goal} "
            f"{r['errors'] + r['floor_errors']:>4} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
            f"{cpu:>11} {pg:>10} {r['wrk_cores']:>9.2f}"
        )


@dataclass
class Setup:
    dbs: Databases
    data_dir: Path
    env: dict[str, str]
    fleets: dict[str, Fleet]
    stamps: Stamps


def prepare(dbs: Databases, data_dir: Path, problem_hosts: bool = True) -> Setup:
    env = warden_env(dbs, data_dir)
    print("Preparing: migrate, train and approve the model, register hosts ...", flush=True)
    prepare_database(env)
    fleets = {
        "warden-healthy": register_fleet(env, data_dir, "ok", HEALTHY_HOSTS),
        "floor-healthy": register_fleet(env, data_dir, "floor-ok", HEALTHY_HOSTS),
    }
    if problem_hosts:
        fleets["warden-problem"] = register_fleet(env, data_dir, "disk", PROBLEM_HOSTS)
        fleets["floor-problem"] = register_fleet(env, data_dir, "floor-disk", PROBLEM_HOSTS)
    return Setup(dbs, data_dir, env, fleets, Stamps())


def start_pair(setup: Setup, command: str, extra_env: dict[str, str]) -> tuple[Server, Server]:
    """Warden and the floor under `command`, both ready."""
    env = {**setup.env, **extra_env}
    warden = Server("warden", command, env, free_port())
    floor = Server(
        "floor", command, {**env, "DJANGO_SETTINGS_MODULE": "bench.floor_settings"}, free_port()
    )
    warden.wait_ready()
    floor.wait_ready()
    # Warm both up (imports, first queries, prepared statements), not counted.
    for server, fleet in ((warden, "warden-healthy"), (floor, "floor-healthy")):
        wrk(server.port, setup.fleets[fleet], setup.stamps, samples=1, duration=3)
    return warden, floor


def bench_arrangement(
    setup: Setup, arrangement: str, workers: int, reps: int, duration: float
) -> list[dict]:
    command = ARRANGEMENTS[arrangement].format(workers=workers)
    warden, floor = start_pair(setup, command, {})
    pg = setup.dbs.postgres_pid
    rows = []
    try:
        trivial = [
            wrk(
                warden.port,
                setup.fleets["warden-healthy"],
                setup.stamps,
                samples=1,
                duration=duration,
                path="/healthz",
                method="GET",
                measured=(warden.process.pid,),
                postgres_pid=pg,
            )
            for _ in range(reps)
        ]
        rows.append(row("GET /healthz (trivial, same command)", 1, trivial, None))
        for samples in (1, 100):
            for kind in ("healthy", "problem"):
                runs: dict[str, list[dict]] = {"warden": [], "floor": []}
                for rep in range(reps):
                    order = ("warden", "floor") if rep % 2 == 0 else ("floor", "warden")
                    for which in order:
                        server = warden if which == "warden" else floor
                        runs[which].append(
                            wrk(
                                server.port,
                                setup.fleets[f"{which}-{kind}"],
                                setup.stamps,
                                samples=samples,
                                duration=duration,
                                problem=kind == "problem",
                                measured=(server.process.pid,),
                                postgres_pid=pg,
                            )
                        )
                label = f"POST {samples} {kind} sample{'s' if samples > 1 else ''}/request"
                rows.append(row(label, samples, runs["warden"], runs["floor"]))
    finally:
        warden.stop()
        floor.stop()
    return rows


def generator_ceiling(setup: Setup, reps: int, duration: float) -> dict:
    front = ConstantFront(setup.data_dir)
    try:
        runs = [
            wrk(
                front.port,
                setup.fleets["warden-healthy"],
                setup.stamps,
                samples=1,
                duration=duration,
                measured=(front.process.pid,),
            )
            for _ in range(reps)
        ]
    finally:
        front.stop()
    return row("wrk's ceiling (nginx, a constant)", 1, runs, None)


def open_tickets(setup: Setup, fleet: Fleet) -> dict[str, Any]:
    """The first problem on each host opens its ticket and decides: each host posts once
    (bench/loadgen.py's closed loop, which stops after one request per host: at this rate
    its own ceiling, near 300 requests/s, is not what is measured)."""
    warden = Server(
        "warden-first-problem", ARRANGEMENTS["sync"].format(workers=4), setup.env, free_port()
    )
    start = datetime.fromtimestamp(setup.stamps.take(), UTC)
    job = {
        "kind": "closed",
        "host": "127.0.0.1",
        "port": 0,
        "host_header": "localhost",
        "path": "/api/v1/metrics",
        "connections": CONNECTIONS,
        "duration": 600,
        "warmup": 0,
        "samples_per_request": 1,
        "start": start.isoformat(),
        "agents": [[name, key, True, 0] for name, key in fleet.hosts],
        "requests": len(fleet.hosts),
    }
    try:
        warden.wait_ready()
        job["port"] = warden.port
        result = subprocess.run(
            [PYTHON, str(ROOT / "bench" / "loadgen.py")],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        warden.stop()
    outcome = json.loads(result.stdout)
    outcome["errors_total"] = sum(outcome["non_2xx"].values()) + sum(outcome["errors"].values())
    return outcome


# --- where a request's CPU goes (--profile) ----------------------------------------------


def stage_breakdown(folder: Path, requests: int, server_cpu_ms: float) -> dict[str, float]:
    """{stage: ms of CPU per request} from the workers' stage files (bench/
    profiled_gunicorn.py), and what is left of the servers' CPU: gunicorn and the rest."""
    seconds: dict[str, float] = {}
    for path in folder.glob("stage-*.json"):
        for stage, spent in json.loads(path.read_text())["seconds"].items():
            seconds[stage] = seconds.get(stage, 0.0) + spent
    if not seconds:
        raise SystemExit(f"no stage timings in {folder}")
    per_request = {stage: 1000 * spent / requests for stage, spent in seconds.items()}
    per_request["gunicorn and the rest"] = server_cpu_ms - sum(per_request.values())
    return per_request


def profile(setup: Setup, workers: int, duration: float) -> None:
    """Time the stages of the 1-sample path in Warden and in the floor, both loaded at once
    (so a busy machine weighs on both alike), and print them side by side."""
    command = ARRANGEMENTS["sync"].format(workers=workers) + " -c bench/profiled_gunicorn.py"
    servers, folders = {}, {}
    try:
        for which in ("warden", "floor"):
            folders[which] = setup.data_dir / f"profile-{which}"
            folders[which].mkdir()
            env = {**setup.env, "BENCH_PROFILE_DIR": str(folders[which])}
            if which == "floor":
                env["DJANGO_SETTINGS_MODULE"] = "bench.floor_settings"
            servers[which] = Server(f"profile-{which}", command, env, free_port())
        for which, server in servers.items():
            server.wait_ready()
            wrk(server.port, setup.fleets[f"{which}-healthy"], setup.stamps, samples=1, duration=3)
            (folders[which] / "on").touch()
        with ThreadPoolExecutor(2) as pool:
            runs = {
                which: pool.submit(
                    wrk,
                    server.port,
                    setup.fleets[f"{which}-healthy"],
                    setup.stamps,
                    samples=1,
                    duration=duration,
                    measured=(server.process.pid,),
                )
                for which, server in servers.items()
            }
            outcomes = {which: run.result() for which, run in runs.items()}
    finally:
        for server in servers.values():
            server.stop()  # TERM: each worker writes its timings as it exits
    results = {
        which: stage_breakdown(folders[which], outcome["requests"], outcome["server_cpu_ms"])
        for which, outcome in outcomes.items()
    }
    warden, floor = results["warden"], results["floor"]
    names = sorted(set(warden) | set(floor), key=lambda name: -warden.get(name, 0.0))
    print(
        "\nWhere a 1-sample POST's CPU goes (ms per request, each stage's own CPU time in "
        f"the gunicorn sync workers, x{workers}; wrk -t{THREADS} -c{CONNECTIONS} on each, "
        f"both at once, {duration:g} s):"
    )
    print(f"{'stage':<40} {'warden':>8} {'floor':>8}")
    for name in names:
        print(f"{name:<40} {warden.get(name, 0.0):>8.3f} {floor.get(name, 0.0):>8.3f}")
    w, f = outcomes["warden"], outcomes["floor"]
    print(f"{'web workers, all':<40} {w['server_cpu_ms']:>8.3f} {f['server_cpu_ms']:>8.3f}")
    rates = f"{w['requests_per_s']:>8.0f} {f['requests_per_s']:>8.0f}"
    print(f"{'requests/s (both at once)':<40} {rates}")
    print("(PostgreSQL's CPU per request, which the two share here: the main table's pg column)")


# --- what a second machine adds (--scaling) ----------------------------------------------

# A fleet agent's post: readings every 10 s, sent once a minute (bench/fleet_simulation.py).
SCALING_SAMPLES = 6


def split_fleet(fleet: Fleet, parts: int) -> list[Fleet]:
    """The fleet's hosts in `parts` fleets of their own (no host posts through two groups)."""
    fleets = []
    for part in range(parts):
        hosts = fleet.hosts[part::parts]
        path = fleet.path.with_suffix(f".part{part}")
        path.write_text("".join(f"{name} {key}\n" for name, key in hosts))
        fleets.append(Fleet(path, hosts))
    return fleets


def scaling(setup: Setup, reps: int, duration: float) -> None:
    """One group of web workers on one core, then two groups on a core each, sharing one
    PostgreSQL and Redis (unpinned): the posts per second each serves, so what a second
    machine adds, and PostgreSQL's CPU per post, where adding machines stops adding."""
    if (psutil.cpu_count() or 1) < 2:
        raise SystemExit("--scaling needs two cores")
    command = ARRANGEMENTS["sync"].format(workers=2)
    groups = [
        Server(f"web-core{core}", command, setup.env, free_port(), cpus=str(core))
        for core in (0, 1)
    ]
    fleets = split_fleet(setup.fleets["warden-healthy"], 2)
    pg = setup.dbs.postgres_pid
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    try:
        for group in groups:
            group.wait_ready()
        for group, fleet in zip(groups, fleets, strict=True):
            wrk(group.port, fleet, setup.stamps, samples=SCALING_SAMPLES, duration=3)
        for _ in range(reps):
            for n_groups in (1, 2):
                pg_before = tree_cpu(pg)
                with ThreadPoolExecutor(n_groups) as pool:
                    runs = [
                        pool.submit(
                            wrk,
                            group.port,
                            fleet,
                            setup.stamps,
                            samples=SCALING_SAMPLES,
                            duration=duration,
                            measured=(group.process.pid,),
                        )
                        for group, fleet in list(zip(groups, fleets, strict=True))[:n_groups]
                    ]
                    outcomes = [run.result() for run in runs]
                posts = sum(outcome["requests"] for outcome in outcomes) or 1
                results[n_groups].append(
                    {
                        "posts_per_s": sum(outcome["requests_per_s"] for outcome in outcomes),
                        "errors": sum(outcome["errors"] for outcome in outcomes),
                        "p99_ms": max(outcome["p99_ms"] for outcome in outcomes),
                        "web_cpu_ms": sum(o["server_cpu_ms"] * o["requests"] for o in outcomes)
                        / posts,
                        "postgres_cpu_ms": 1000 * (tree_cpu(pg) - pg_before) / posts,
                    }
                )
    finally:
        for group in groups:
            group.stop()
    print(
        f"\nWhat a second machine adds: groups of web workers ({command}), each on one core "
        f"(taskset), one PostgreSQL and Redis unpinned; {SCALING_SAMPLES} samples a post (a "
        f"minute of 10-second readings), wrk -t{THREADS} -c{CONNECTIONS} per group, "
        f"{reps} x {duration:g} s, medians:"
    )
    one = statistics.median(r["posts_per_s"] for r in results[1])
    for n_groups, label in ((1, "one group, core 0"), (2, "two groups, cores 0 and 1")):
        runs = results[n_groups]
        rate = statistics.median(r["posts_per_s"] for r in runs)
        pg_ms = statistics.median(r["postgres_cpu_ms"] for r in runs)
        print(
            f"  {label:<26} {rate:>7,.0f} posts/s ({rate * 60:>9,.0f} hosts posting once a "
            f"minute; x{rate / one:.2f}), errors {sum(r['errors'] for r in runs)}, p99 "
            f"{statistics.median(r['p99_ms'] for r in runs):.0f} ms; CPU a post: web "
            f"{statistics.median(r['web_cpu_ms'] for r in runs):.2f} ms, PostgreSQL "
            f"{pg_ms:.2f} ms (one core of it serves {1000 / pg_ms:,.0f} posts/s)"
        )


def judge(rows: list[dict], ceiling: dict) -> None:
    """Print each goal of issue 23 met or not, and whether wrk was above both servers."""
    by_case = {r["case"]: r for r in rows}
    for samples in (1, 100):
        suffix = "s" if samples > 1 else ""
        for kind in ("healthy", "problem"):
            r = by_case[f"POST {samples} {kind} sample{suffix}/request"]
            met = "met" if r["ratio"] >= GOAL_RATIO[samples] else "NOT met"
            print(
                f"  {samples:>3}/request {kind}: {r['ratio']:.2f}x the floor "
                f"(goal >= {GOAL_RATIO[samples]}: {met}); errors {r['errors']}, "
                f"answered as resent {r['duplicates']} (goal 0 and 0)"
            )
    fastest = max(r["floor"] or 0 for r in rows if r["samples"] == 1)
    print(
        f"  wrk's ceiling {ceiling['warden']:,.0f} requests/s is "
        f"{ceiling['warden'] / fastest:.1f}x the fastest 1-sample server here ({fastest:,.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 5-second repetition per case")
    parser.add_argument("--profile", action="store_true", help="profile the 1-sample path")
    parser.add_argument(
        "--scaling", action="store_true", help="one web group on a core, then two on two"
    )
    parser.add_argument("--arrangements", default="sync", help="sync, uvicorn or sync,uvicorn")
    parser.add_argument("--sync-workers", type=int, default=4)
    parser.add_argument("--uvicorn-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench_serving needs wrk: apt-get install wrk")
    reps, duration = (1, 5.0) if args.quick else (3, 10.0)
    report: dict[str, Any] = {"machine": {"cpus": psutil.cpu_count()}, "arrangements": {}}
    with throwaway_servers() as dbs, tempfile.TemporaryDirectory() as tmp:
        setup = prepare(dbs, Path(tmp), problem_hosts=not (args.profile or args.scaling))
        if args.profile:
            profile(setup, args.sync_workers, 10.0 if args.quick else 30.0)
            return
        if args.scaling:
            scaling(setup, reps, duration)
            return
        qcluster = Server("qcluster", "manage.py qcluster", setup.env, None)
        try:
            first = open_tickets(setup, setup.fleets["warden-problem"])
            report["first_problem"] = first
            print(
                f"First problem on each of {PROBLEM_HOSTS} hosts (opens a ticket, decides, "
                f"queues an execution or asks people; sync x4, {CONNECTIONS} agents): "
                f"{first['requests_per_s']:,.0f} requests/s, p50 {first['p50_ms']:.1f} ms, "
                f"p99 {first['p99_ms']:.1f} ms, errors {first['errors_total']}"
            )
            ceiling = generator_ceiling(setup, reps, duration)
            report["ceiling"] = ceiling
            for arrangement in args.arrangements.split(","):
                workers = args.sync_workers if arrangement == "sync" else args.uvicorn_workers
                rows = bench_arrangement(setup, arrangement, workers, reps, duration)
                report["arrangements"][arrangement] = {"workers": workers, "rows": rows}
                command = ARRANGEMENTS[arrangement].format(workers=workers)
                print_table(
                    f"{arrangement}: {command}; wrk -t{THREADS} -c{CONNECTIONS}, "
                    f"{reps} x {duration:g} s, medians; cpu and pg: Warden/floor",
                    [ceiling, *rows],
                )
                judge(rows, ceiling)
        finally:
            qcluster.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
