"""The real thing: gunicorn + uvicorn, a qcluster on Redis, PostgreSQL, and an agent process."""

import pytest

from remediation.hosts import add_host
from remediation.models import Execution, Ticket
from tests.integration.conftest import start_web, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_filling_disk_heals_itself_across_processes(processes, approved_model):
    # given Warden's web server, a worker and a simulated agent on a filling disk
    host, key = add_host("int-01")
    url = start_web(processes)
    processes.start("qcluster", "manage.py", "qcluster")
    processes.start(
        "agent",
        "-m",
        "remediation.agent",
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
    assert execution.fencing_token == 1
