"""Faults injected into the production arrangement, each once mid-run, and what they cost.

The arrangement (README: Running in production): nginx in front, web (gunicorn, 4 sync
workers), live (one uvicorn worker), a qcluster, PostgreSQL and Redis (bench/servers.py).
300 hosts take a reading every 5 s and post what Warden has not acknowledged, and hold a
long poll for their actions (bench/fault_agents.py); 5% of them keep a disk problem the
policies heal. The faults, one after another with calm between:

  qcluster    kill -9 of the cluster's main process with dispatch tasks in flight, and a
              new cluster started 3 s later (as a supervisor restarts the role)
  redis       Redis stopped for some seconds
  postgres    PostgreSQL restarted (stopped, started again some seconds later)
  exhausted   PostgreSQL out of connections: every free slot taken for some seconds
  web         the web process stopped for some seconds
  live        the live process stopped for some seconds

With each fault, a few hosts kept apart report a new problem while it lasts: their fixes
must be dispatched once it ends (a dispatch task lost with the cluster or refused by
Redis is found again). For each fault: the client's errors by status from its start
until the next, how soon answers came while it lasted, the recovery time (from the fault's
end to the last failed post), and how soon the work it held was dispatched. For the
run: readings acknowledged against stored (lost, stored twice), executions run twice or
rolled back without having run, the audit chain (verify_audit), and orphaned processes.

    .venv/bin/python bench/bench_faults.py            # 300 hosts, 12 s faults, ~7 minutes
    .venv/bin/python bench/bench_faults.py --quick    # 60 hosts, 5 s faults, ~3 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import psycopg

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
    prepare_database,
    register,
    throwaway_servers,
    warden_env,
)

FAULTS = ("qcluster", "redis", "postgres", "exhausted", "web", "live")
BURST_HOSTS = 4  # hosts kept apart that report a problem during each fault
TRUST = """
from django.utils import timezone
from governance.models import Policy
from governance.policies.actions import save_policy
for policy in Policy.objects.filter(name__endswith="-self-healing"):
    policy.min_similar_tickets, policy.min_reliability_score = 0, 45.0
    policy.max_actions_per_hour, policy.blast_radius_max_percent = 10000, 100.0
    policy.blast_radius_max_hosts = None
    save_policy(policy, actor=None, reason="bench: heal from the first ticket", now=timezone.now())
"""
STORED = """
import json
from collections import defaultdict
from remediation.models import Execution
from scoring.models import MetricSample
stored = defaultdict(list)
for host, taken_at in MetricSample.objects.values_list("host__name", "taken_at").iterator():
    stored[host].append(taken_at.isoformat())
dispatched = {
    name: state
    for name, state in Execution.objects.filter(host__name__startswith="burst-")
    .values_list("host__name", "state")
}
states = {}
for state in Execution.objects.values_list("state", flat=True):
    states[state] = states.get(state, 0) + 1
print(json.dumps({"stored": stored, "burst": dispatched, "executions": states}))
"""
DISPATCHED_SQL = """
SELECT h.name, e.state, extract(epoch FROM e.dispatched_at)
FROM remediation_execution e JOIN remediation_host h ON h.id = e.host_id
WHERE h.name = ANY(%s)
"""


def post_problem(url: str, key: str, host: str) -> None:
    """A burst host reports its problem, sent again until Warden acknowledges it."""
    from datetime import UTC, datetime

    sample = {
        "host": host,
        "taken_at": datetime.now(UTC).isoformat(),
        "disk_usage": 97.0,
        "memory_usage": 50.0,
        "cpu_usage": 25.0,
        "dns_latency_ms": 18.0,
        "firewall_change_requested": 0,
    }
    request = urllib.request.Request(
        url + "/api/v1/metrics",
        data=json.dumps(sample).encode(),
        headers={
            "Host": "localhost",
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
        },
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)


class Arrangement:
    """The production servers, each of which a fault may stop and start again."""

    def __init__(self, env: dict[str, str], work: Path, dbs: Databases) -> None:
        self.env, self.work, self.dbs = env, work, dbs
        self.web_port, self.live_port = free_port(), free_port()
        self.web = self.start_web()
        self.live = self.start_live()
        self.qcluster = Server("qcluster", "manage.py qcluster", env, None)
        self.web.wait_ready()
        self.live.wait_ready()
        self.front = Front(work, self.web_port, self.live_port)
        self.orphans: list[int] = []

    def start_web(self, name: str = "web") -> Server:
        return Server(name, ARRANGEMENTS["sync"].format(workers=4), self.env, self.web_port)

    def start_live(self, name: str = "live") -> Server:
        return Server(name, LIVE_COMMAND, self.env, self.live_port)

    def fault(self, name: str, seconds: float) -> float:
        """Inject `name`, hold it `seconds` (3 s for the cluster's restart); returns when it
        ended (wall clock)."""
        if name == "qcluster":
            main = psutil.Process(self.qcluster.process.pid)
            children = main.children(recursive=True)
            os.kill(main.pid, signal.SIGKILL)
            self.qcluster.process.wait()
            time.sleep(3)
            self.orphans = [p.pid for p in children if p.is_running() and p.status() != "zombie"]
            for pid in self.orphans:  # an orphan would take tasks beside the new cluster
                os.kill(pid, signal.SIGKILL)
            self.qcluster = Server("qcluster-after", "manage.py qcluster", self.env, None)
        elif name == "redis":
            self.dbs.control.stop_redis()
            time.sleep(seconds)
            self.dbs.control.start_redis()
        elif name == "postgres":
            self.dbs.control.stop_postgres()
            time.sleep(seconds)
            self.dbs.control.start_postgres()
        elif name == "exhausted":
            hog = []
            while True:
                try:
                    hog.append(psycopg.connect(self.dbs.database_url, connect_timeout=3))
                except psycopg.OperationalError:
                    break
            time.sleep(seconds)
            for connection in hog:
                connection.close()
        elif name in ("web", "live"):
            server = getattr(self, name)
            server.stop()
            time.sleep(seconds)
            again = f"{name}-after"
            server = self.start_web(again) if name == "web" else self.start_live(again)
            setattr(self, name, server)
            server.wait_ready(timeout=60)
        return time.time()

    def stop(self) -> None:
        self.front.stop()
        for server in (self.qcluster, self.live, self.web):
            server.stop()


def burst(url: str, hosts: list[list[str]]) -> threading.Thread:
    """The hosts report their problem at once, each until acknowledged, in the background."""
    threads = [threading.Thread(target=post_problem, args=(url, key, name)) for name, key in hosts]
    for thread in threads:
        thread.start()

    def join() -> None:
        for thread in threads:
            thread.join()

    joiner = threading.Thread(target=join)
    joiner.start()
    return joiner


def dispatched_at(database_url: str, names: list[str], until: float) -> float | None:
    """When the last of these hosts' executions left the queue (wall clock), or None if one
    is still queued at `until`."""
    while time.time() < until:
        try:
            with psycopg.connect(database_url, connect_timeout=3) as connection:
                rows = connection.execute(DISPATCHED_SQL, (names,)).fetchall()
        except psycopg.OperationalError:
            rows = []
        if len(rows) == len(names) and all(state not in ("queued", "held") for _, state, _ in rows):
            return max(float(at) for _, _, at in rows if at is not None)
        time.sleep(0.5)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 hosts, 5 s faults")
    parser.add_argument("--hosts", type=int)
    parser.add_argument("--fault-seconds", type=float)
    parser.add_argument("--calm", type=float, help="seconds between faults")
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    hosts_n = args.hosts or (60 if args.quick else 300)
    seconds = args.fault_seconds or (5.0 if args.quick else 12.0)
    calm = args.calm or (15.0 if args.quick else 30.0)
    with throwaway_servers("warden_faults") as dbs, tempfile.TemporaryDirectory() as tmp:
        if dbs.control is None:
            raise SystemExit("bench_faults stops and starts its own servers: unset BENCH_*_URL")
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = warden_env(dbs, work)
        print(f"Preparing: migrate, model, {hosts_n} hosts ...", flush=True)
        prepare_database(env)
        manage(env, "shell", "-c", TRUST)
        hosts = register(env, "host", hosts_n)
        bursts = register(env, "burst", BURST_HOSTS * len(args.faults))
        agents = [[name, key, i % 20 == 0] for i, (name, key) in enumerate(hosts)]
        servers = Arrangement(env, work, dbs)
        url = f"http://127.0.0.1:{servers.front.port}"
        results: dict = {"faults": []}
        try:
            time.sleep(1)
            ceiling = json.loads(
                subprocess.run(
                    [PYTHON, str(ROOT / "bench" / "fault_agents.py")],
                    input=json.dumps(
                        {
                            "kind": "ceiling",
                            "host": "127.0.0.1",
                            "port": servers.front.port,
                            "path": "/healthz",
                            "seconds": 3,
                            "connections": 16,
                        }
                    ),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )["requests_per_s"]
            duration = calm + len(args.faults) * (seconds + calm + 5)
            job = {
                "host": "127.0.0.1",
                "port": servers.front.port,
                "agents": agents,
                "period": 5.0,
                "duration": duration,
                "timeout": 10.0,
                "max_batch": 100,
                "poll_wait": 20,
                "relapse": 40.0,
                "flush": 60.0,
            }
            print(
                f"Running {hosts_n} agents (a reading every 5 s, {sum(a[2] for a in agents)} with "
                f"a disk problem) for {duration:.0f} s; faults {', '.join(args.faults)}, "
                f"{seconds:g} s each, {calm:g} s apart; the client's ceiling {ceiling:,.0f} "
                f"requests/s against /healthz (the load: {hosts_n / 5:.0f} posts/s)",
                flush=True,
            )
            client = subprocess.Popen(
                [PYTHON, str(ROOT / "bench" / "fault_agents.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert client.stdin is not None
            client.stdin.write(json.dumps(job))
            client.stdin.close()
            time.sleep(calm)
            for index, name in enumerate(args.faults):
                group = bursts[index * BURST_HOSTS : (index + 1) * BURST_HOSTS]
                started = time.time()
                if name == "qcluster":
                    burster = burst(url, group)  # tasks queued, then the cluster killed
                    time.sleep(0.3)
                    ended = servers.fault(name, seconds)
                else:
                    fault = threading.Thread(target=servers.fault, args=(name, seconds))
                    fault.start()
                    time.sleep(min(1.0, seconds / 3))
                    burster = burst(url, group)
                    fault.join()
                    ended = time.time()
                burster.join()
                done = dispatched_at(dbs.database_url, [h for h, _ in group], ended + 60)
                fault_result = {
                    "fault": name,
                    "started": started,
                    "ended": ended,
                    "work_resumed_s": None if done is None else max(0.0, done - ended),
                    "orphans": len(servers.orphans) if name == "qcluster" else None,
                }
                results["faults"].append(fault_result)
                print(
                    f"  {name}: held work dispatched {fault_result['work_resumed_s']}", flush=True
                )
                time.sleep(max(0.0, calm - (time.time() - ended)))
            assert client.stdout is not None
            outcome = json.loads(client.stdout.read())
            client.wait()
        finally:
            servers.stop()
        stored = json.loads(manage(env, "shell", "-c", STORED).splitlines()[-1])
        chain = subprocess.run(
            [PYTHON, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        results.update(ceiling=ceiling, chain=chain.returncode == 0, chain_output=chain.stdout)
        report(results, outcome, stored)
        if args.json:
            args.json.write_text(json.dumps({"results": results, "client": outcome}, indent=1))


def report(results: dict, outcome: dict, stored: dict) -> None:
    requests = outcome["requests"]
    faults = results["faults"]
    print(
        "\nfault      lasted  errors by status (from its start to the next)        "
        "posts refused in (p50/max) recovery  work dispatched"
    )
    for index, fault in enumerate(faults):
        until = faults[index + 1]["started"] if index + 1 < len(faults) else float("inf")
        window = [r for r in requests if fault["started"] <= r[0] < until]
        failed = [r for r in window if not r[2].startswith("2")]
        statuses = Counter(f"{kind} {status}" for _, kind, status, _ in failed)
        latencies = sorted(
            latency
            for sent, kind, _, latency in failed
            if kind == "post" and sent <= fault["ended"]
        )
        answered = (
            f"{latencies[len(latencies) // 2]:.2f}/{latencies[-1]:.2f} s" if latencies else "-"
        )
        # Recovery: until the agents' readings were taken again (a long poll held through the
        # fault may meet its first error later, and is counted among the errors).
        last_failure = max(
            (sent + latency for sent, kind, _, latency in failed if kind == "post"), default=None
        )
        recovery = 0.0 if last_failure is None else max(0.0, last_failure - fault["ended"])
        fault["errors"] = dict(statuses)
        fault["recovery_s"] = recovery
        work = "never" if fault["work_resumed_s"] is None else f"{fault['work_resumed_s']:.1f} s"
        orphans = "" if fault["orphans"] is None else f"; orphans {fault['orphans']}"
        lasted = fault["ended"] - fault["started"]
        print(
            f"{fault['fault']:<10} {lasted:5.1f} s {json.dumps(dict(statuses)):<52} "
            f"{answered:>14} {recovery:7.1f} s  {work}{orphans}"
        )
    acked = outcome["acked"]
    kept = stored["stored"]
    lost = sum(len(set(taken) - set(kept.get(host, []))) for host, taken in acked.items())
    twice = sum(len(taken) - len(set(taken)) for taken in kept.values())
    total_acked = sum(len(taken) for taken in acked.values())
    print(
        f"\nReadings: {total_acked:,} acknowledged, {sum(len(t) for t in kept.values()):,} "
        f"stored; lost {lost}, stored twice {twice}; {outcome['unacknowledged']} never "
        f"acknowledged (still held by their agents at the end)"
    )
    print(
        f"Executions: {outcome['runs']} run by the agents; run twice {outcome['ran_twice']}; "
        f"rolled back without having run {outcome['rolled_back_never_ran']}; by state "
        f"{stored['executions']}"
    )
    verdict = "intact" if results["chain"] else "BROKEN"
    print(f"Audit chain: {verdict} ({results['chain_output'].strip()[-200:]})")
    print(f"Client ceiling: {results['ceiling']:,.0f} requests/s against /healthz through nginx")


if __name__ == "__main__":
    main()
