"""Concurrent requests on PostgreSQL: one host's simultaneous batches open one ticket, not two."""

import json
import os
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from governance.models import Decision, Policy
from governance.policies.actions import save_policy
from remediation.actions import add_host
from remediation.models import Execution, Host, Ticket
from scoring.models import MetricSample
from tests.conftest import HEALTHY, PROBLEMS
from tests.integration.conftest import free_port, wait_until

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


# Serialized rollback: the rows migrations seed (roles, the audit chain's head) come back.
@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_simultaneous_batches_showing_a_new_problem_share_one_ticket(servers, approved_model):
    # given a host whose agent (retrying, or several collectors) posts six batches at once
    host, key = add_host("burst-01", now=timezone.now())
    start = threading.Barrier(6)
    statuses: list[int] = []

    def post(second: int) -> None:
        sample = {
            "host": host.name,
            "taken_at": f"2026-11-25T10:00:{second:02d}Z",
            **HEALTHY,
            **PROBLEMS["disk"],
        }
        try:
            start.wait()
            response = Client().post(
                "/api/v1/metrics",
                data=json.dumps(sample),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
            )
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    # when they arrive together
    threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then every batch is stored and counted on the one disk ticket
    assert statuses == [201] * 6
    [ticket] = Ticket.objects.filter(host=host, category="disk")
    assert ticket.occurrence_count == 6


def start_web_command(processes, workers: int) -> tuple[subprocess.Popen, str]:
    """The web command's gunicorn alone (no front), answering; its process and URL."""
    port = free_port()
    web = processes.start(
        "web",
        *("-m", "gunicorn", "config.wsgi:application", "-c", "config/gunicorn.py"),
        *("--worker-class", "sync", "-w", str(workers)),
        *("-b", f"127.0.0.1:{port}"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: _answers(f"{url}/healthz"), 60, "the web server", lambda: processes.log("web")
    )
    return web, url


def storm_through_web(processes, hosts: list[tuple[Host, str]], problem: dict) -> list[str]:
    """Every host posts a healthy reading, then all of them `problem` at the same instant,
    through the web command's sync workers (several processes deciding at once); returns
    each problem's decision."""
    _, url = start_web_command(processes, workers=6)
    answers: list[tuple[int, str]] = []

    def post(host: Host, key: str, start: threading.Barrier, problem: dict) -> None:
        second = 1 if problem else 0
        sample = {"host": host.name, "taken_at": f"2026-11-25T10:00:0{second}Z", **HEALTHY}
        sample.update(problem)
        request = urllib.request.Request(
            f"{url}/api/v1/metrics",
            data=json.dumps(sample).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        start.wait()
        with urllib.request.urlopen(request, timeout=60) as response:
            if problem:
                answers.append((response.status, json.load(response)["results"][0]["decision"]))

    def all_at_once(problem: dict) -> None:
        start = threading.Barrier(len(hosts), timeout=60)
        threads = [threading.Thread(target=post, args=(*pair, start, problem)) for pair in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    # (a healthy reading each first: every worker has loaded the model before the storm)
    all_at_once({})
    all_at_once(problem)
    assert [status for status, _ in answers] == [201] * len(hosts), processes.log("web")
    return [decision for _, decision in answers]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_storm_on_thirty_hosts_decides_no_more_than_the_blast_radius(processes, approved_model):
    # given 30 hosts under the disk policy's 20% blast radius (6 may be fixed at once)
    hosts = [add_host(f"storm-{i:02d}", now=timezone.now()) for i in range(30)]
    policy = Policy.objects.get(category="disk")
    assert policy.blast_radius_max_percent == 20.0 and policy.max_actions_per_hour >= 6

    # when every host reports a full disk at the same instant
    storm_through_web(processes, hosts, PROBLEMS["disk"])

    # then exactly the limit heal by themselves, and the rest wait for people with the
    # blast radius named: the decisions counted under one lock, not each on its own
    automatic = [d for d in Decision.objects.filter(outcome="AUTO_HEAL") if d.allowed]
    assert len(automatic) == 6
    assert Execution.objects.count() == 6
    others = Decision.objects.exclude(pk__in=[d.pk for d in automatic])
    assert others.count() == 24
    assert all(any("Blast radius" in line for line in d.reasons) for d in others)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_storm_starts_exactly_the_rate_limit_however_many_decide_at_once(
    processes, approved_model
):
    # given a disk policy that may act four times an hour, on any share of the fleet
    policy = Policy.objects.get(category="disk", enabled=True)
    policy.max_actions_per_hour, policy.blast_radius_max_percent = 4, 100.0
    save_policy(policy, actor=None, reason="a storm under a rate limit", now=timezone.now())
    hosts = [add_host(f"rate-{i:02d}", now=timezone.now()) for i in range(24)]

    # when every host's disk fills at the same instant
    decisions = storm_through_web(processes, hosts, PROBLEMS["disk"])

    # then exactly four heal by themselves, never a fifth, and the rest wait for people
    # with the rate limit named
    assert sorted(decisions) == ["AUTO_HEAL"] * 4 + ["HITL_REQUIRED"] * 20
    assert Execution.objects.exclude(state="cancelled").count() == 4
    held = Decision.objects.exclude(outcome="AUTO_HEAL")
    assert held.count() == 20
    assert all(d.safety_checks["rate_limit_ok"] is False for d in held)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def database_sockets_of(pid: int) -> int:
    """How many TCP connections to the test database's port the process `pid` holds."""
    port = int(connections["default"].settings_dict["PORT"] or 5432)
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                held += 1
    return held


def workers_of(arbiter: int) -> set[int]:
    children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return {int(pid) for pid in children}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_web_worker_killed_is_replaced_by_one_that_serves_at_once(processes, approved_model):
    # given the web command's arbiter, which loads the views and the model once and forks
    # its two workers with them
    host, key = add_host("fork-01", now=timezone.now())
    web, url = start_web_command(processes, workers=2)
    wait_until(lambda: len(workers_of(web.pid)) == 2, 30, "two workers")
    first = workers_of(web.pid)

    def post(second: int) -> int:
        sample = {"host": host.name, "taken_at": f"2026-11-25T10:00:{second:02d}Z", **HEALTHY}
        request = urllib.request.Request(
            f"{url}/api/v1/metrics",
            data=json.dumps(sample).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    # when one worker dies, after the workers served requests from their pools
    assert [post(second) for second in range(10)] == [201] * 10
    assert database_sockets_of(web.pid) == 0  # what it forks holds no connection
    assert sum(database_sockets_of(worker) for worker in first) >= 1
    os.kill(min(first), signal.SIGKILL)
    wait_until(
        lambda: len(workers_of(web.pid) - first) == 1 and len(workers_of(web.pid)) == 2,
        30,
        "a new worker",
        lambda: processes.log("web"),
    )

    # then its replacement, forked from the arbiter, takes metrics with its own database
    # connections (none crossed the fork) and the model it was forked with
    assert [post(second) for second in range(10, 40)] == [201] * 30
    assert MetricSample.objects.filter(host=host).count() == 40
    log = processes.log("web")
    assert log.count("ready with severity model") == 1, log  # loaded once, by the arbiter
    assert "Traceback" not in log, log
