"""Alerts in and hand-off out through the real servers: nginx and gunicorn in front of
PostgreSQL, a qcluster on Redis, an automation system's receiver calling back over HTTP."""

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from governance.models import AuditEvent
from governance.people.actions import issue_api_token
from remediation import handoff
from remediation.actions import add_host, save_automation_target, save_runbook
from remediation.models import Alert, AutomationTarget, Execution, Runbook, Ticket
from tests.integration.conftest import start_web, wait_until

# Alerts from a few days back, not a fixed date: intake refuses alerts older than a year.
DAY = (datetime.now(UTC) - timedelta(days=4)).date().isoformat()
STARTED = f"{DAY}T01:00:00Z"


pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]

SECRET = "integration-shared-secret"


def post_json(url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_an_alertmanager_pair_sending_the_same_group_at_once_opens_one_ticket_per_problem(
    processes,
):
    # given five hosts, Warden's servers and an alert sender's token
    hosts = [add_host(f"am-{n:02d}", now=timezone.now())[0] for n in range(5)]
    sender = User.objects.create_user("alertmanager")
    sender.groups.add(Group.objects.get(name="alert senders"))
    _, key = issue_api_token(
        sender, actor=None, expiry_days=1, reason="integration", now=timezone.now()
    )
    url = start_web(processes)
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "warden",
        "commonLabels": {"alertname": "HostOutOfMemory", "severity": "warning"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"instance": f"{host.name}:9100"},
                "annotations": {"summary": f"{host.name} is out of memory"},
                "startsAt": STARTED,
                "fingerprint": f"{n:016x}",
            }
            for n, host in enumerate(hosts)
        ],
    }

    # when eight deliveries of the same group arrive at once (an HA pair, and its retries)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: post_json(
                    f"{url}/api/v1/alerts/alertmanager", body, {"Authorization": f"Token {key}"}
                ),
                range(8),
            )
        )

    # then each problem has one ticket, opened once, and every delivery was counted
    assert [status for status, _ in answers] == [200] * 8, answers
    outcomes = sorted(a["outcome"] for _, answer in answers for a in answer["alerts"])
    assert outcomes.count("opened") == 5 and outcomes.count("repeated") == 35
    assert Ticket.objects.filter(source="alert").count() == 5
    for host in hosts:
        ticket = Ticket.objects.get(host=host)
        assert ticket.category == "memory" and ticket.occurrence_count == 1
        assert Alert.objects.get(ticket=ticket).received_count == 8
    assert AuditEvent.objects.filter(action="ticket.opened").count() == 5


class AutomationSystem:
    """An AWX stand-in: takes a launch, runs the job in a thread, calls back signed."""

    def __init__(self) -> None:
        self.launches: list[dict[str, Any]] = []
        self.callbacks: list[tuple[int, Any]] = []
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                valid = handoff.signature_valid(
                    SECRET,
                    self.headers["X-Warden-Signature"],
                    "POST",
                    self.path,
                    raw,
                    datetime.now().timestamp(),
                    60,
                )
                launch = json.loads(raw)["extra_vars"]["warden"]
                system.launches.append({"valid": valid, **launch})
                self.send_response(201 if valid else 403)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"job": 7000 + len(system.launches)}).encode())
                threading.Thread(target=system.run_job, args=(launch,)).start()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def run_job(self, launch: dict[str, Any]) -> None:
        """The playbook's last task: report to the callback URL it was given."""
        body = json.dumps(
            {"token": launch["token"], "ok": True, "output": f"{launch['action']}: changed=1"}
        ).encode()
        path = urlsplit(launch["callback_url"]).path  # the signature names the execution
        signature = handoff.sign(SECRET, "POST", path, body, int(datetime.now().timestamp()))
        request = urllib.request.Request(
            launch["callback_url"],
            data=body,
            headers={"Content-Type": "application/json", "X-Warden-Signature": signature},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self.callbacks.append((response.status, json.loads(response.read())))
        except urllib.error.HTTPError as exc:
            self.callbacks.append((exc.code, json.loads(exc.read() or b"null")))


def test_a_fix_handed_to_an_automation_system_is_called_back_and_verified(
    processes, approved_model, alice, monkeypatch
):
    # given the disk runbook run by an AWX job template, and Warden's processes
    host, key = add_host("ho-01", now=timezone.now())
    # the shared secret, in the environment of every process: the worker signs with it,
    # the web server checks callbacks with it
    monkeypatch.setenv("WARDEN_TARGET_INTEGRATION_SECRET", SECRET)
    # the system's stand-in listens on loopback, which Warden refuses unless allowed
    monkeypatch.setenv("WARDEN_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8")
    url = start_web(processes)
    system = AutomationSystem()
    monkeypatch.setenv("WARDEN_CALLBACK_BASE_URL", url)  # the qcluster builds callback URLs
    target = AutomationTarget(
        name="awx",
        kind="awx",
        url=f"{system.url}/api/v2/job_templates/12/launch/",
        secret_env="WARDEN_TARGET_INTEGRATION_SECRET",
    )
    save_automation_target(target, actor=alice, reason="AWX runs disk fixes", now=timezone.now())
    runbook = Runbook.objects.get(name="clean-temp-and-rotate-logs")
    runbook.handoff_target = target
    save_runbook(runbook, actor=alice, reason="AWX runs disk fixes", now=timezone.now())
    processes.start("qcluster", "manage.py", "qcluster")
    agent = {"Authorization": f"Bearer {key}"}
    healthy = {
        "host": host.name,
        "disk_usage": 45.0,
        "memory_usage": 50.0,
        "cpu_usage": 25.0,
        "dns_latency_ms": 18.0,
        "firewall_change_requested": 0,
    }

    def logs() -> str:
        return "\n".join(
            f"--- {name}\n{processes.log(name)[-3000:]}" for name in ("web", "qcluster")
        )

    # when the host's agent reports a full disk
    status, _ = post_json(
        f"{url}/api/v1/metrics",
        {**healthy, "disk_usage": 97.0, "taken_at": timezone.now().isoformat()},
        agent,
    )
    assert status == 201

    # then the worker hands it to the system, which runs it and calls back over HTTP
    wait_until(lambda: bool(system.callbacks), 120, "the automation system's callback", logs)
    [launch] = system.launches
    assert launch["valid"] and launch["host"] == host.name and launch["kind"] == "run"
    assert urlsplit(launch["callback_url"]).netloc == urlsplit(url).netloc
    assert system.callbacks == [
        (200, {"execution_id": launch["execution_id"], "state": "verifying"})
    ]

    # and fresh metrics verify the fix
    post_json(f"{url}/api/v1/metrics", {**healthy, "taken_at": timezone.now().isoformat()}, agent)
    execution = Execution.objects.get(pk=launch["execution_id"])
    assert execution.state == "succeeded", logs()
    assert execution.remote_reference == "7001"
    assert execution.output == "clean_temp_and_rotate_logs: changed=1"
