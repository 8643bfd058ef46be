"""The real thing: gunicorn + uvicorn, a qcluster on Redis, PostgreSQL, and an agent process."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from websockets.sync.client import connect

from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest
from remediation.actions import add_host
from remediation.models import Execution, Ticket
from tests.integration.conftest import start_web, wait_until

pytestmark = [
    pytest.mark.usefixtures("trusting_policies"),
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_filling_disk_heals_itself_across_processes(processes, approved_model):
    # given Warden's web server, a worker and a simulated agent on a filling disk
    host, key = add_host("int-01", now=timezone.now())
    url = start_web(processes)
    processes.start("qcluster", "manage.py", "qcluster")
    processes.start(
        "agent",
        "-m",
        "remediation.simulated_fleet",
        "run",
        "--url",
        url,
        "--key",
        key,
        "--host",
        host.name,
        "--simulate",
        "disk_filling",
        "--seed",
        "3",
        "--interval",
        "0.2",
    )

    def logs() -> str:
        return "\n".join(
            f"--- {name}\n{processes.log(name)[-3000:]}" for name in ("web", "qcluster", "agent")
        )

    # then the disk problem is ticketed, auto-healed by the agent and verified
    wait_until(
        lambda: Ticket.objects.filter(host=host, category="disk", status="resolved").exists(),
        timeout=90,
        what="the disk ticket to be resolved",
        logs=logs,
    )
    execution = Execution.objects.get(ticket__host=host, ticket__category="disk")
    assert execution.state == "succeeded"
    assert execution.runbook.action == "clean_temp_and_rotate_logs"
    assert execution.fencing_token == 2 * execution.pk - 1  # its run's: unique to it


def start_agent(processes, url: str, key: str, host: str, scenario: str) -> None:
    processes.start(
        "agent",
        *("-m", "remediation.simulated_fleet", "run", "--url", url, "--key", key, "--host", host),
        *("--simulate", scenario, "--seed", "5", "--interval", "0.2"),
    )


def test_a_dns_spike_waits_for_two_people_and_the_console_sees_every_process(
    processes, approved_model, alice, bob, carol
):
    # given Warden's processes, an agent whose DNS latency spikes, and alice's live console
    host, key = add_host("int-02", now=timezone.now())
    url = start_web(processes)
    processes.start("qcluster", "manage.py", "qcluster")
    client = Client()
    client.force_login(alice)
    with connect(
        f"{url.replace('http', 'ws')}/ws/console",
        additional_headers={
            "Cookie": f"sessionid={client.cookies['sessionid'].value}",
            "Origin": url,
        },
        open_timeout=10,
    ) as console:
        console.send(json.dumps({"after": 0}))
        start_agent(processes, url, key, host.name, "dns_latency_spike")

        def logs() -> str:
            return "\n".join(
                f"--- {name}\n{processes.log(name)[-3000:]}"
                for name in ("web", "qcluster", "agent")
            )

        # then the ticket waits for two approvers and nothing runs meanwhile
        wait_until(
            lambda: ApprovalRequest.objects.filter(ticket__host=host, status="pending").exists(),
            timeout=60,
            what="an approval request for the DNS ticket",
            logs=logs,
        )
        request = ApprovalRequest.objects.get(ticket__host=host)
        assert request.required_approvals == 2
        assert not Execution.objects.filter(ticket__host=host).exclude(state="held").exists()

        # when two approvers say yes (from this process, as the admin would)
        now = timezone.now()
        approve_request(request, actor=bob, reason="resolver is flapping", now=now)
        approve_request(request, actor=carol, reason="agreed", now=now + timedelta(seconds=1))

        # then the worker dispatches it, the agent runs it, and fresh metrics resolve the ticket
        wait_until(
            lambda: Ticket.objects.filter(host=host, category="dns", status="resolved").exists(),
            timeout=90,
            what="the DNS ticket to be resolved",
            logs=logs,
        )
        execution = Execution.objects.get(ticket__host=host, ticket__category="dns")
        assert execution.state == "succeeded"
        assert execution.runbook.action == "switch_dns_resolver"

        # and the console saw events written by this process, the worker and the web server
        seen: set[str] = set()
        wanted = {"approval.approved", "execution.dispatched", "execution.succeeded"}
        deadline = timezone.now() + timedelta(seconds=20)
        while not wanted <= seen and timezone.now() < deadline:
            message = json.loads(console.recv(timeout=20))
            seen.update(event["action"] for event in message["events"])
        assert wanted <= seen, f"console saw only {sorted(seen)}"
