"""A storm: every host reports the same new problem within one second, through the
production arrangement, beside a healthy second of the same shape.

The arrangement (README: Running in production, bench/servers.py): nginx in front of the
web process (gunicorn, sync workers) and the live process (one uvicorn worker), a qcluster,
PostgreSQL and Redis. The category's policy acts by itself within its limits (disk at
L3, trusting from the first ticket, as an operator who trusts it sets it) unless
`--category dns` (a critical write: people approve every one).

1. The load generator's own ceiling: back to back against /healthz through the same
   front, and its CPU beside the servers' in each phase.
2. Floor: every host posts one healthy sample, the posts spread evenly over one second
   (bench/loadgen.py's fleet job, open loop): latency, and the web process's CPU per post.
3. Storm: every host posts a sample showing the problem, spread over one second: each
   post opens the host's ticket and decides it. Reported: when each ticket's decision was
   chained, from the storm's start (p50/p99, and the last), the hosts' answers, the web
   process's CPU per first problem beside the floor's per healthy post, executions
   started against the policy's rate limit and blast radius, the notices written and the
   messages people got (at WARDEN_NOTICE_GROUP_WAIT_SECONDS's default wait), and the live
   console: a websocket client, signed in as a supervisor, timing each event from its
   commit (created_at, taken just before) to its arrival, and the frames that carried
   them.

    .venv/bin/python bench/bench_storm.py              # 1,000 hosts
    .venv/bin/python bench/bench_storm.py --quick      # 200 hosts, a few minutes
    .venv/bin/python bench/bench_storm.py --category dns

Figures from a shared machine move with its other work: the bench prints how busy the
cores were.
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
from typing import Any

import psutil
import psycopg
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet_simulation import cpu_by_role
from bench.loadgen import percentile
from bench.servers import (
    PYTHON,
    ROOT,
    manage,
    prepare_database,
    production_stack,
    register,
    throwaway_servers,
    warden_env,
)

GOAL_DECIDED_S = 10.0
GOAL_EVENT_P95_MS = 500.0
GOAL_CPU_MS = 10.0
PROBLEMS = {"disk": {"disk_usage": 97.0}, "dns": {"dns_latency_ms": 650.0}}
GROUP_WAIT_SECONDS = 30  # the notices' wait: WARDEN_NOTICE_GROUP_WAIT_SECONDS's default

# The category's policy as the bench sets it (through save_policy, audited), and a
# supervisor and an approver with a signed-in session for the console.
SETUP = """
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Group, User
from django.utils import timezone
from governance.models import Policy
from governance.policies.actions import save_policy
policy = Policy.objects.get(category=%(category)r, enabled=True)
for field, value in %(fields)r.items():
    setattr(policy, field, value)
save_policy(policy, actor=None, reason="bench: a storm", now=timezone.now())
for name, group in (("storm-supervisor", "supervisors"), ("storm-approver", "approvers")):
    user = User.objects.create_user(name, email=f"{name}@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
store = import_module(settings.SESSION_ENGINE).SessionStore()
supervisor = User.objects.get(username="storm-supervisor")
store[SESSION_KEY] = str(supervisor.pk)
store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
store[HASH_SESSION_KEY] = supervisor.get_session_auth_hash()
store.create()
print(json.dumps({"session": store.session_key}))
"""


class ConsoleWatch(threading.Thread):
    """A signed-in console's websocket: when each event arrived, and in how many frames."""

    def __init__(self, url: str, session: str) -> None:
        super().__init__(daemon=True)
        self.url, self.session = url, session
        self.arrivals: dict[int, tuple[float, dict[str, Any]]] = {}
        self.frames = 0
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error = ""

    def run(self) -> None:
        try:
            with connect(
                self.url,
                origin="http://localhost",
                additional_headers={"Cookie": f"sessionid={self.session}"},
                max_size=None,
            ) as socket:
                self.ready.set()
                while not self.done.is_set():
                    try:
                        raw = socket.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    arrived = time.time()
                    data = json.loads(raw)
                    self.frames += 1
                    for event in data.get("events", []):
                        self.arrivals.setdefault(event["sequence"], (arrived, event))
        except Exception as error:  # reported, not raised: the storm's other figures stand
            self.error = f"{type(error).__name__}: {error}"
            self.ready.set()

    def latencies_ms(self, since: float) -> list[float]:
        return [
            (arrived - datetime.fromisoformat(event["created_at"]).timestamp()) * 1000
            for arrived, event in self.arrivals.values()
            if arrived >= since
        ]


def burst(front: int, agents: list[list[Any]], start: datetime) -> dict[str, Any]:
    """Every agent posts once, the posts spread evenly over one second (open loop)."""
    return loadgen(
        {
            "kind": "fleet",
            "port": front,
            "path": "/api/v1/metrics",
            "connections": len(agents),
            "duration": 1.0,
            "period": 1.0,
            "samples_per_request": 1,
            "start": start.isoformat(),
            "agents": agents,
        }
    )


def ceiling(front: int, seconds: float = 3.0) -> dict[str, Any]:
    """The load generator against a trivial endpoint (/healthz) through the same front,
    64 connections back to back: what it can drive, and its CPU doing so."""
    return loadgen(
        {
            "kind": "closed",
            "port": front,
            "path": "/healthz",
            "connections": 64,
            "duration": seconds,
            "warmup": 0.5,
            "samples_per_request": 0,
            "start": datetime.now(UTC).isoformat(),
            "agents": [["none", "", False, 0]],
        }
    )


def loadgen(job: dict[str, Any]) -> dict[str, Any]:
    """bench/loadgen.py in a process of its own (its CPU is not the servers')."""
    job = {"host": "127.0.0.1", "host_header": "localhost", **job}
    result = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "loadgen.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each role (bench/fleet_simulation.py's), PostgreSQL's with its
    ended backends (counted in the postmaster's children's times), which the running
    processes alone lose when a connection closes."""
    seconds = cpu_by_role(pids)
    postgres = 0.0
    for process in psutil.process_iter(["name", "ppid"]):
        if (process.info["name"] or "").startswith("postgres"):
            try:
                times = process.cpu_times()
                parent = psutil.Process(process.info["ppid"]).name()
            except psutil.Error:
                continue
            postgres += times.user + times.system
            if not parent.startswith("postgres"):  # the postmaster
                postgres += times.children_user + times.children_system
    seconds["postgres"] = postgres
    return seconds


def measured(pids: dict[str, int], run: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """`run()`'s result and the CPU seconds each role spent meanwhile."""
    before = cpu_seconds(pids)
    outcome = run()
    after = cpu_seconds(pids)
    return outcome, {role: after[role] - before.get(role, 0.0) for role in after}


def settled(url: str, category: str, since: datetime, count: int, timeout: float) -> None:
    """Wait until every host's ticket of the storm is decided (the web process finishes
    what it accepted even when nginx stopped waiting for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        decided = query(
            url,
            "SELECT count(DISTINCT d.ticket_id) FROM governance_decision d JOIN "
            "remediation_ticket t ON t.id = d.ticket_id WHERE t.category = %s AND "
            "t.opened_at >= %s",
            category,
            since,
        )[0][0]
        if decided >= count:
            return
        time.sleep(0.5)


def query(url: str, sql: str, *args: Any) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql, args).fetchall()


def wait_for_digest(url: str, storm_start: datetime, timeout: float) -> list[tuple]:
    """The deliveries made since the storm, once every notice of it is gathered into one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = query(
            url,
            "SELECT count(*) FROM governance_notice WHERE delivery_id IS NULL AND created_at >= %s",
            storm_start,
        )[0][0]
        deliveries = query(
            url,
            "SELECT kind, digest, status, (SELECT count(*) FROM governance_notice n "
            "WHERE n.delivery_id = d.id) FROM governance_noticedelivery d "
            "WHERE created_at >= %s ORDER BY id",
            storm_start,
        )
        if deliveries and not waiting and all(status != "pending" for *_, status, _ in deliveries):
            return deliveries
        time.sleep(1)
    return deliveries


def analysis(url: str, category: str, storm_start: datetime) -> dict[str, Any]:
    tickets = query(
        url,
        "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM governance_decision d "
        "WHERE d.ticket_id = t.id)) FROM remediation_ticket t "
        "WHERE category = %s AND opened_at >= %s",
        category,
        storm_start,
    )[0]
    outcomes = dict(
        query(
            url,
            "SELECT outcome, count(*) FROM governance_decision d JOIN remediation_ticket t "
            "ON t.id = d.ticket_id WHERE t.category = %s AND t.opened_at >= %s GROUP BY outcome",
            category,
            storm_start,
        )
    )
    executions = query(
        url,
        "SELECT count(*), count(DISTINCT host_id), count(*) FILTER (WHERE state <> 'queued') "
        "FROM remediation_execution WHERE created_at >= %s AND state <> 'cancelled'",
        storm_start,
    )[0]
    limits = query(
        url,
        "SELECT max_actions_per_hour, blast_radius_max_hosts, blast_radius_max_percent "
        "FROM governance_policy WHERE category = %s AND enabled",
        category,
    )[0]
    hosts = query(url, "SELECT count(*) FROM remediation_host WHERE enabled")[0][0]
    notices = query(
        url, "SELECT count(*) FROM governance_notice WHERE created_at >= %s", storm_start
    )[0][0]
    return {
        "tickets": tickets[0],
        "decided": tickets[1],
        "outcomes": outcomes,
        "executions": executions[0],
        "execution_hosts": executions[1],
        "dispatched": executions[2],
        "rate_limit": limits[0],
        "blast_hosts": limits[1],
        "blast_percent": limits[2],
        "fleet": hosts,
        "notices": notices,
    }


def policy_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Disk acts by itself from the first confident ticket (the tests' trusting policy);
    the limits are the run's."""
    fields: dict[str, Any] = {"max_actions_per_hour": args.rate_limit}
    if args.category == "disk":
        fields |= {"min_similar_tickets": 0, "min_reliability_score": 45.0}
    if args.blast_radius_hosts is not None:
        fields |= {"blast_radius_max_hosts": args.blast_radius_hosts}
        fields |= {"blast_radius_max_percent": None}
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 hosts")
    parser.add_argument("--category", choices=sorted(PROBLEMS), default="disk")
    parser.add_argument("--rate-limit", type=int, default=10, help="max_actions_per_hour")
    parser.add_argument("--blast-radius-hosts", type=int, default=None)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    count = 200 if args.quick else args.hosts
    with throwaway_servers("warden_storm") as dbs, tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = warden_env(
            dbs, work, WARDEN_NOTICE_GROUP_WAIT_SECONDS=str(GROUP_WAIT_SECONDS), LOG_LEVEL="ERROR"
        )
        started = time.monotonic()
        print(f"Preparing: migrate, model, policy, {count:,} hosts ...", flush=True)
        prepare_database(env)
        setup = SETUP % {"category": args.category, "fields": policy_fields(args)}
        session = json.loads(manage(env, "shell", "-c", setup).splitlines()[-1])["session"]
        hosts = register(env, "storm", count)
        print(f"  ready in {time.monotonic() - started:.0f} s", flush=True)
        with production_stack(env, work, web_workers=args.web_workers) as stack:
            report = run_storm(
                args, count, hosts, dbs.database_url, stack.front.port, stack.pids(), session
            )
        print_report(args, count, report)


def run_storm(
    args: argparse.Namespace,
    count: int,
    hosts: list[list[str]],
    database_url: str,
    front: int,
    pids: dict[str, int],
    session: str,
) -> dict[str, Any]:
    print("Load generator's ceiling against /healthz ...", flush=True)
    trivial, trivial_cpu = measured(pids, lambda: ceiling(front))
    watch = ConsoleWatch(f"ws://127.0.0.1:{front}/ws/console", session)
    watch.start()
    watch.ready.wait(30)
    start = datetime.now(UTC) - timedelta(seconds=3)  # the healthy readings, then the storm's
    healthy = [[name, key, False, 0] for name, key in hosts]
    sick = [[name, key, PROBLEMS[args.category], 1] for name, key in hosts]
    print(f"Floor: {count:,} healthy posts in one second ...", flush=True)
    floor, floor_cpu = measured(pids, lambda: burst(front, healthy, start))
    time.sleep(2)
    print(f"Storm: {count:,} hosts report {args.category} within one second ...", flush=True)
    storm_start = datetime.now(UTC)
    system_before = psutil.cpu_times()

    def storm_until_decided() -> dict[str, Any]:
        outcome = burst(front, sick, start)
        settled(database_url, args.category, storm_start, count, 600)
        return outcome

    storm, storm_cpu = measured(pids, storm_until_decided)
    system_after = psutil.cpu_times()
    # When each ticket's decision was chained (just before its commit), from the storm's start.
    decided = [
        (at - storm_start).total_seconds()
        for (at,) in query(
            database_url,
            "SELECT created_at FROM governance_auditevent WHERE action = 'decision.made' "
            "AND created_at >= %s",
            storm_start,
        )
    ]
    print("  waiting for the notices' digest ...", flush=True)
    deliveries = wait_for_digest(database_url, storm_start, GROUP_WAIT_SECONDS + 60)
    watch.done.set()
    watch.join(5)
    committed = query(
        database_url,
        "SELECT count(*), count(*) FILTER (WHERE action = 'ticket.opened') "
        "FROM governance_auditevent WHERE created_at >= %s",
        storm_start,
    )[0]
    heard = [
        event
        for _, event in watch.arrivals.values()
        if datetime.fromisoformat(event["created_at"]) >= storm_start
    ]
    busy = sum(
        getattr(system_after, f) - getattr(system_before, f)
        for f in ("user", "system", "nice", "irq", "softirq")
    )
    idle = system_after.idle - system_before.idle
    return {
        "floor": floor,
        "floor_cpu": floor_cpu,
        "storm": storm,
        "storm_cpu": storm_cpu,
        "decided": decided,
        "ceiling": trivial,
        "ceiling_cpu": trivial_cpu,
        "analysis": analysis(database_url, args.category, storm_start),
        "deliveries": deliveries,
        "console": {
            "latencies": watch.latencies_ms(storm_start.timestamp()),
            "frames": watch.frames,
            "events": len(heard),
            "tickets_heard": sum(1 for event in heard if event["action"] == "ticket.opened"),
            "committed": committed[0],
            "tickets_committed": committed[1],
            "error": watch.error,
        },
        "busy": 100 * busy / (busy + idle) if busy + idle else 0.0,
    }


def print_report(args: argparse.Namespace, count: int, report: dict[str, Any]) -> None:
    floor, storm, ceiling = report["floor"], report["storm"], report["ceiling"]
    found = report["analysis"]
    # Every post the web process took, answered or not (nginx gives up after 60 s, the
    # worker finishes what it accepted): the CPU is the decided tickets'.
    per_post = {
        name: 1000 * report[f"{name}_cpu"].get("web", 0.0) / count for name in ("floor", "storm")
    }
    decided = report["decided"]
    errors = sum(storm["non_2xx"].values()) + sum(storm["errors"].values())
    print(f"\nStorm of {count:,} {args.category} problems (machine {report['busy']:.0f}% busy):")
    print(
        f"  every ticket opened and decided {max(decided, default=0):.1f} s after the storm "
        f"began (goal < {GOAL_DECIDED_S:g} s); each decided at p50 "
        f"{percentile(decided, 0.5):.1f} s, p99 {percentile(decided, 0.99):.1f} s"
    )
    print(
        f"  the hosts' answers: p50 {storm['p50_ms']:.0f} ms, p99 {storm['p99_ms']:.0f} ms, "
        f"max {storm['max_ms']:.0f} ms from each report; errors {errors} "
        f"{storm['non_2xx'] or ''}{storm['errors'] or ''}"
    )
    print(
        f"  tickets {found['tickets']:,}, decided {found['decided']:,}; "
        f"outcomes {found['outcomes']}"
    )
    radius = (
        f"{found['blast_hosts']} hosts"
        if found["blast_hosts"] is not None
        else f"{found['blast_percent']:g}% of {found['fleet']:,} hosts"
    )
    print(
        f"  executions started {found['executions']} on {found['execution_hosts']} hosts "
        f"({found['dispatched']} dispatched) against the rate limit {found['rate_limit']}/h "
        f"and the blast radius {radius}"
    )
    messages = ", ".join(
        f"{kind} {'digest' if digest else 'single'} of {n} ({status})"
        for kind, digest, status, n in report["deliveries"]
    )
    print(
        f"  notices: {found['notices']:,} written, {len(report['deliveries'])} message(s) "
        f"to people: {messages or 'none yet'}"
    )
    console = report["console"]
    latencies = console["latencies"]
    print(
        f"  console: {console['events']:,} of {console['committed']:,} events heard "
        f"({console['tickets_heard']:,} of {console['tickets_committed']:,} tickets opened) in "
        f"{console['frames']:,} frames; event latency p50 "
        f"{percentile(latencies, 0.5):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms "
        f"(goal < {GOAL_EVENT_P95_MS:g}), max {max(latencies, default=0):.0f} ms"
        f"{'; ' + console['error'] if console['error'] else ''}"
    )
    print(
        f"  web CPU per post: first problem {per_post['storm']:.1f} ms (goal <= "
        f"{GOAL_CPU_MS:g}) beside the floor, a healthy post, {per_post['floor']:.1f} ms"
    )
    print(
        f"Floor: {floor['ok']:,} healthy posts in one second: p50 {floor['p50_ms']:.0f} ms, "
        f"p99 {floor['p99_ms']:.0f} ms, errors "
        f"{sum(floor['non_2xx'].values()) + sum(floor['errors'].values())}"
    )
    for name in ("floor", "storm", "ceiling"):
        cores = report[f"{name}_cpu"]
        client = report[name]["client_cpu_s"]
        print(
            f"  CPU seconds, {name}: "
            + ", ".join(f"{role} {seconds:.2f}" for role, seconds in sorted(cores.items()))
            + f", load generator {client:.2f}"
        )
    print(
        f"Load generator's ceiling, 64 connections against /healthz through the front: "
        f"{ceiling['requests_per_s']:,.0f} requests/s (p99 {ceiling['p99_ms']:.0f} ms), "
        f"{count:,} a second asked of it in the storm"
    )


if __name__ == "__main__":
    main()
