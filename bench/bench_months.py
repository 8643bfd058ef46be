"""Months of samples: Warden with 10 thousand stored samples against 10 million.

Issue 23's second figure: with 10 million stored samples, ingest, the console's panels, a
host's page, drift and the audit export are within 20% of their time with 10 thousand.

Through the production arrangement: a throwaway PostgreSQL and Redis (bench/servers.py),
`web` (gunicorn, 4 sync workers) behind nginx (deploy/nginx). Samples are partitioned by
day, their minute summaries by week (scoring/partitions.py).

1. Warden is migrated, a model trained and approved, HOSTS hosts registered.
2. The newest 10,000 samples are loaded by COPY (one a minute per host, the minute's
   summary with each), and every measure is taken ("10k").
3. The older samples are loaded by COPY back over the keeping period, across its daily
   partitions, up to SAMPLES in all (10 million; `--quick`: 1 million), ANALYZE, and every
   measure is taken again ("10M").
4. The worker's retention runs as if two days later: the days past the keeping period are
   dropped a partition at a time (scoring/retention.py); its time and rows are printed.

The measures, each through nginx:
- ingest: wrk (2 threads, 8 connections) posting one sample per request, every request a
  new reading of one of the hosts (a Lua script), requests/s and non-2xx answers;
- pages, one request at a time, REPEAT times each: the console's panels (/console/panels),
  a host's page (its admin page: the last day drawn), drift (the serving model's admin page,
  which computes it uncached), the sample list (/admin/scoring/metricsample/) and the audit
  export (CSV of the whole trail): median and p95 milliseconds, and the CPU the web workers
  and PostgreSQL spent per request (psutil), steadier than wall time on a shared machine;
- the load generator's own ceiling: wrk against /healthz through the same nginx.

    .venv/bin/python bench/bench_months.py [--quick] [--samples N] [--hosts N]

`--quick` takes about 3 minutes; the full run about 15 (most of it loading).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import (
    ROOT,
    manage,
    prepare_database,
    production_stack,
    register,
    throwaway_servers,
    tree_cpu,
    warden_env,
)

FIRST_PHASE = 10_000
SESSION = """
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x" * 20)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""
RETENTION = """
import json, time
from datetime import timedelta
from django.utils import timezone
from scoring.retention import apply_retention
started = time.perf_counter()
run = apply_retention(timezone.now() + timedelta(days=2))
print(json.dumps({"seconds": time.perf_counter() - started, "removed": run.removed}))
"""
INGEST_LUA = r"""
-- One new reading per request, of the hosts this thread owns (no two threads share a host,
-- so no reading is a resend), stamped a millisecond apart from BASE (epoch seconds).
local hosts = HOSTS
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  own = {}
  for i, host in ipairs(hosts) do
    if (i - 1) % THREADS == tid then table.insert(own, host) end
  end
  count = 0
end
function request()
  count = count + 1
  local host = own[(count % #own) + 1]
  local t = BASE + count * 0.001
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) ..
    string.format(".%06dZ", math.floor((t % 1) * 1000000))
  local body = '{"host":"' .. host[1] .. '","taken_at":"' .. stamp ..
    '","disk_usage":41.5,"memory_usage":52.0,"cpu_usage":31.0,"dns_latency_ms":20.0,' ..
    '"firewall_change_requested":0}'
  return wrk.format("POST", "/api/v1/metrics",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. host[2]}, body)
end
"""


# --- loading ---------------------------------------------------------------------------------


def load(
    database_url: str, host_ids: list[int], version_id: int, newest: datetime, first: int, last: int
) -> float:
    """COPY the samples numbered [first, last) back from `newest` (0 is the newest), one a
    minute per host, with each one's minute summary; returns seconds taken."""
    started = time.perf_counter()
    hosts = np.asarray(host_ids)
    rng = np.random.default_rng(first)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for chunk in range(first, last, 200_000):
            n = np.arange(chunk, min(chunk + 200_000, last))
            host = hosts[n % len(hosts)]
            minute_back = n // len(hosts)
            disk = rng.normal(45, 10, n.size).clip(0, 100).round(1)
            memory = rng.normal(50, 10, n.size).clip(0, 100).round(1)
            cpu = rng.normal(30, 15, n.size).clip(0, 100).round(1)
            dns = rng.normal(20, 5, n.size).clip(0, None).round(1)
            stamps = [(newest - timedelta(minutes=int(m))).isoformat() for m in minute_back]
            minutes = [
                (newest - timedelta(minutes=int(m))).replace(second=0, microsecond=0).isoformat()
                for m in minute_back
            ]
            with conn.cursor() as cursor:
                with cursor.copy(
                    "COPY scoring_metricsample (host_id, taken_at, received_at, observed_at, "
                    "disk_usage, memory_usage, cpu_usage, dns_latency_ms, "
                    "firewall_change_requested, severity, confidence, category, categories, "
                    "explanation, model_version_id) FROM STDIN"
                ) as copy:
                    copy.write(
                        "".join(
                            f"{h}\t{t}\t{t}\t{t}\t{d}\t{m}\t{c}\t{s}\tf\t0\t0.97\t\t[]\t[]\t"
                            f"{version_id}\n"
                            for h, t, d, m, c, s in zip(
                                host, stamps, disk, memory, cpu, dns, strict=True
                            )
                        )
                    )
                with cursor.copy(
                    "COPY scoring_sampleminute (host_id, minute, samples, disk_min, disk_max, "
                    "disk_sum, memory_min, memory_max, memory_sum, cpu_min, cpu_max, cpu_sum, "
                    "dns_min, dns_max, dns_sum, worst_severity, last_at, last_severity, "
                    "last_features) FROM STDIN"
                ) as copy:
                    copy.write(
                        "".join(
                            f"{h}\t{mi}\t1\t{d}\t{d}\t{d}\t{m}\t{m}\t{m}\t{c}\t{c}\t{c}\t"
                            f"{s}\t{s}\t{s}\t0\t{t}\t0\t[{d}, {m}, {c}, {s}, 0, 0, 0, 0, 0]\n"
                            for h, mi, t, d, m, c, s in zip(
                                host, minutes, stamps, disk, memory, cpu, dns, strict=True
                            )
                        )
                    )
            print(f"  loaded {min(chunk + 200_000, last):,} samples", flush=True)
        with conn.cursor() as cursor:
            cursor.execute(
                "UPDATE remediation_host h SET last_sample_at = %s, last_seen_at = %s, "
                "last_metrics = '[45.0, 50.0, 30.0, 20.0, 0]'",
                [newest, newest],
            )
            cursor.execute("ANALYZE")
    return time.perf_counter() - started


def stored(database_url: str) -> tuple[int, int, int]:
    """Samples, minute summaries, and the samples' partitions."""
    with psycopg.connect(database_url) as conn:
        samples = conn.execute("SELECT count(*) FROM scoring_metricsample").fetchone()[0]
        minutes = conn.execute("SELECT count(*) FROM scoring_sampleminute").fetchone()[0]
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'scoring_metricsample'::regclass"
        ).fetchone()[0]
    return samples, minutes, parts


# --- measuring -------------------------------------------------------------------------------


def wrk(url: str, seconds: int, script: Path | None = None) -> dict:
    """wrk's requests/s, p99 latency (ms) and non-2xx answers."""
    args = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", str(script)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "rate": rate,
        "errors": int(errors.group(1)) if errors else 0,
        "p99": float(p99.group(1)) * scale,
    }


def ingest_script(work: Path, hosts: list[list[str]], phase: str) -> Path:
    script = work / f"ingest-{phase}.lua"
    listed = "{" + ",".join(f'{{"{name}","{key}"}}' for name, key in hosts) + "}"
    base = datetime.now(UTC).timestamp() - 5.0
    script.write_text(
        INGEST_LUA.replace("HOSTS", listed).replace("THREADS", "2").replace("BASE", f"{base:.3f}")
    )
    return script


class CPU:
    """CPU seconds (user + system) spent by the web server's and PostgreSQL's processes
    (PostgreSQL's only when bench/ started it)."""

    def __init__(self, *roots: int | None) -> None:
        self.roots = roots

    def seconds(self) -> float:
        return sum(tree_cpu(pid) for pid in self.roots)


def pages(base: str, session: str, paths: dict[str, str], repeat: int, cpu: CPU) -> dict:
    """Per page: median and p95 ms, CPU ms per request, one request at a time."""
    client = requests.Session()
    client.cookies.set("sessionid", session)
    found = {}
    for name, path in paths.items():
        response = client.get(base + path, timeout=120)  # warm: caches, plans, imports
        if response.status_code != 200:
            raise SystemExit(f"{name} ({path}) answered {response.status_code}")
        times = []
        before = cpu.seconds()
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(base + path, timeout=120)
            response.content  # noqa: B018 (streamed exports: read them whole)
            times.append((time.perf_counter() - started) * 1000)
        found[name] = {
            "median": statistics.median(times),
            "p95": sorted(times)[max(0, round(0.95 * len(times)) - 1)],
            "cpu": (cpu.seconds() - before) * 1000 / repeat,
        }
    return found


def measure(
    phase: str, base: str, session: str, paths: dict[str, str], hosts, args, work: Path, cpu: CPU
) -> dict:
    print(f"Measuring with {phase} stored ...", flush=True)
    figures = pages(base, session, paths, args.repeat, cpu)
    figures["ingest"] = wrk(base, args.seconds, ingest_script(work, hosts, phase))
    figures["ceiling"] = wrk(base + "/healthz", max(3, args.seconds // 2))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 million samples, shorter runs")
    parser.add_argument("--samples", type=int, help="samples in all (10 million by default)")
    # 160 hosts: the newest 10,000 samples fill the console's hour for every host, so the
    # two phases draw the same hour (240 hosts left it two-thirds full at 10 thousand, and
    # the panels' ratio measured the hour filling, not the months stored). Ten million
    # readings of 160 hosts span 43 days, so samples are kept 45 (the default is 30).
    parser.add_argument("--hosts", type=int, default=160)
    parser.add_argument("--keep-days", type=int, default=45, help="WARDEN_SAMPLE_RETENTION_DAYS")
    parser.add_argument("--repeat", type=int, help="requests per page and phase")
    parser.add_argument("--seconds", type=int, help="seconds of each wrk run")
    args = parser.parse_args()
    args.samples = args.samples or (1_000_000 if args.quick else 10_000_000)
    args.repeat = args.repeat or (10 if args.quick else 30)
    args.seconds = args.seconds or (8 if args.quick else 20)
    span = timedelta(minutes=args.samples // args.hosts)
    if span > timedelta(days=args.keep_days - 1):
        raise SystemExit(
            f"{args.samples:,} samples of {args.hosts} hosts span {span}: more "
            f"than the {args.keep_days} days kept; give more --hosts or --keep-days"
        )
    if args.hosts * 60 > FIRST_PHASE:
        print(
            f"Note: {args.hosts} hosts' last hour is more than the first {FIRST_PHASE:,} "
            "samples, so the console draws less of it at first than later.",
            flush=True,
        )
    work = Path(tempfile.mkdtemp(prefix="warden-months-"))
    with throwaway_servers("warden_months") as databases:
        env = warden_env(databases, work / "data", WARDEN_SAMPLE_RETENTION_DAYS=str(args.keep_days))
        print(
            "Preparing: migrate, collectstatic, train and approve the model, register hosts ...",
            flush=True,
        )
        prepare_database(env, collectstatic=True)
        hosts = register(env, "months", args.hosts)
        session = manage(env, "shell", "-c", SESSION).strip().splitlines()[-1]
        with psycopg.connect(databases.database_url) as conn:
            host_ids = [
                row[0] for row in conn.execute("SELECT id FROM remediation_host ORDER BY name")
            ]
            version_id = conn.execute(
                "SELECT id FROM scoring_modelversion WHERE status = 'approved'"
            ).fetchone()[0]
        newest = datetime.now(UTC) - timedelta(minutes=2)
        seconds = load(databases.database_url, host_ids, version_id, newest, 0, FIRST_PHASE)

        with production_stack(env, work, live=False, qcluster=False) as stack:
            base = f"http://127.0.0.1:{stack.front.port}"
            cpu = CPU(stack.web.process.pid, databases.postgres_pid)
            paths = {
                "console panels": "/console/panels",
                "host page": f"/admin/remediation/host/{host_ids[0]}/change/",
                "drift": f"/admin/scoring/modelversion/{version_id}/change/",
                "sample list": "/admin/scoring/metricsample/",
                "audit export": "/admin/governance/auditevent/export/?export_format=csv",
            }
            counts = {"10k": stored(databases.database_url)}
            results = {"10k": measure("10k", base, session, paths, hosts, args, work, cpu)}
            print(f"Loading {args.samples - FIRST_PHASE:,} older samples by COPY ...", flush=True)
            seconds = load(
                databases.database_url, host_ids, version_id, newest, FIRST_PHASE, args.samples
            )
            print(f"  {args.samples - FIRST_PHASE:,} samples in {seconds:.0f} s", flush=True)
            counts["10M"] = stored(databases.database_url)
            results["10M"] = measure("10M", base, session, paths, hosts, args, work, cpu)
        retention = json.loads(manage(env, "shell", "-c", RETENTION).strip().splitlines()[-1])
        report(args, counts, results, retention)


def report(args, counts: dict, results: dict, retention: dict) -> None:
    print()
    print(
        f"Months of samples: {args.hosts} hosts, one reading a minute each, kept "
        f"{args.keep_days} days; "
        f"web = gunicorn 4 sync workers behind nginx; a busy shared machine shows in "
        f"every wall-clock figure, CPU per request is steadier."
    )
    for phase, (samples, minutes, parts) in counts.items():
        print(
            f"  {phase}: {samples:,} samples in {parts} daily partitions, "
            f"{minutes:,} minute summaries"
        )
    small, large = results["10k"], results["10M"]
    print()
    print(f"| measure | 10k stored | {counts['10M'][0]:,} stored | ratio |")
    print("| --- | --- | --- | --- |")
    for name in small:
        if name in ("ingest", "ceiling"):
            continue
        a, b = small[name], large[name]
        print(
            f"| {name}: median ms (p95) | {a['median']:.1f} ({a['p95']:.1f}) | "
            f"{b['median']:.1f} ({b['p95']:.1f}) | {b['median'] / a['median']:.2f}x |"
        )
        print(
            f"| {name}: CPU ms per request | {a['cpu']:.1f} | {b['cpu']:.1f} | "
            f"{b['cpu'] / a['cpu']:.2f}x |"
        )
    a, b = small["ingest"], large["ingest"]
    print(
        f"| ingest, 1 sample per request (wrk): req/s | {a['rate']:.0f} | {b['rate']:.0f} | "
        f"{b['rate'] / a['rate']:.2f}x |"
    )
    print(
        f"| ingest: p99 ms / non-2xx | {a['p99']:.0f} / {a['errors']} | "
        f"{b['p99']:.0f} / {b['errors']} | |"
    )
    print(
        f"| load generator's ceiling (wrk, /healthz): req/s | {small['ceiling']['rate']:.0f} | "
        f"{large['ceiling']['rate']:.0f} | |"
    )
    print()
    removed = retention["removed"]
    samples = {k: v for k, v in removed.items() if k.startswith("scoring_metricsample")}
    print(
        f"Retention two days later: {len(samples)} sample partitions dropped "
        f"({sum(samples.values()):,} rows), {len(removed) - len(samples)} minute-summary "
        f"partitions, in {retention['seconds']:.2f} s, each with its audit event."
    )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
