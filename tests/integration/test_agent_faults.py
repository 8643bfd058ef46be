"""The real `warden-agent` process against Warden's production servers, when things go wrong
between them: a server that takes a request and never answers, and an action claimed by an
agent that died before starting it.

A server that hangs delays no reading: the agent takes readings on schedule in one thread
while another's post hangs, and every reading arrives once afterwards. A claim its agent
never said it started is offered again with the same token to the agent that comes back,
which runs it once; nothing is judged failed, rolled back or counted on the way.
"""

import contextlib
import itertools
import json
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from feedback.models import Pattern
from governance.models import AuditEvent
from remediation.actions import add_host, save_runbook
from remediation.models import Execution, Runbook, Ticket
from scoring.models import MetricSample
from tests.conftest import HEALTHY, PROBLEMS
from tests.integration.conftest import Processes, start_web, wait_until
from tests.integration.test_real_fix import (
    AGENT_SHELL,
    RUNBOOK,
    on_host,
    plant,
    require_mount_namespace,
    write_agent_files,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]

AGENT = Path(sys.executable).parent / "warden-agent"
ACK_SECONDS = 4  # the servers' WARDEN_AGENT_ACK_SECONDS here: a claim is offered again soon
REQUEST_TIMEOUT = 2  # the agent's: a post unanswered this long counts the server away
HANG_SECONDS = 6  # the server hangs three times that: every post meanwhile times out


class Hangable:
    """A TCP front for Warden that forwards each connection, or, while `hang` is set, takes
    it and never answers (a server that hangs: connected, silent)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hang = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.hang.is_set():
                self.held.append(client)  # open, never read, never answered
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for held in self.held:
            held.close()


@pytest.fixture
def hangable(processes: Processes) -> Iterator[Hangable]:
    url = start_web(processes)
    front = Hangable(int(url.rsplit(":", 1)[1]))
    yield front
    front.close()


def agent_config(folder: Path, url: str, host: str, key: str) -> Path:
    """An agent reading this machine's own (healthy) disk every second, allowing nothing,
    and waiting REQUEST_TIMEOUT seconds for an answer."""
    folder.mkdir(mode=0o700)
    key_file = folder / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    (folder / "allowlist.json").write_text("{}")
    config = folder / "agent.toml"
    settings = {
        "url": url,
        "host": host,
        "key_file": str(key_file),
        "allowlist": str(folder / "allowlist.json"),
        "spool_dir": str(folder / "spool"),
        "firewall_flag": str(folder / "firewall-change-requested"),  # never created
    }
    config.write_text(
        "".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items())
        + f"interval = 1\npoll_wait = 20\nrequest_timeout = {REQUEST_TIMEOUT}\n"
    )
    return config


def test_readings_go_on_while_the_server_hangs_and_each_arrives_once(
    processes: Processes, approved_model: Any, hangable: Hangable, tmp_path: Path
) -> None:
    # given a real agent taking a reading every second, posting through a front that works
    host, key = add_host("hang-01", now=timezone.now())
    url = f"http://127.0.0.1:{hangable.port}"
    agent = processes.start_program(
        "agent",
        str(AGENT),
        "run",
        "--config",
        str(agent_config(tmp_path / "agent", url, host.name, key)),
    )

    def logs() -> str:
        return "\n".join(f"--- {n}\n{processes.log(n)[-3000:]}" for n in ("agent", "web"))

    samples = MetricSample.objects.filter(host=host)
    wait_until(lambda: samples.count() >= 3, 60, "the agent's first readings", logs)

    # when the server takes every request and answers none, for longer than a post waits
    hangable.hang.set()
    hung_from = timezone.now()
    time.sleep(HANG_SECONDS)
    hangable.hang.clear()
    hung_until = timezone.now()
    assert agent.poll() is None, logs()

    # then the readings taken meanwhile, one a second, all arrive once it answers again
    wait_until(
        lambda: samples.filter(taken_at__gte=hung_until + timedelta(seconds=2)).exists(),
        60,
        "readings after the server came back",
        logs,
    )
    stored = list(samples.order_by("taken_at").values_list("taken_at", "received_at"))
    taken = [at for at, _ in stored]
    assert len(taken) == len(set(taken))  # none twice
    during = [at for at in taken if hung_from < at < hung_until]
    assert len(during) >= HANG_SECONDS - 2, (len(during), logs())
    gaps = [later - earlier for earlier, later in itertools.pairwise(taken)]
    assert max(gaps) < timedelta(seconds=2.5), (max(gaps), logs())
    # and none of them reached the server while it hung: they waited in the agent
    assert not [r for _, r in stored if hung_from + timedelta(seconds=1) < r < hung_until]
    assert "server unavailable" in processes.log("agent")


def post_sample(url: str, key: str, sample: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/api/v1/metrics",
        data=json.dumps(sample).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def take_and_vanish(url: str, key: str) -> list[dict]:
    """What an agent that dies right after its poll was answered got: a claim, never started."""
    request = urllib.request.Request(
        f"{url}/api/v1/agent/actions?wait=0", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["actions"]


def test_a_claim_its_dead_agent_never_started_is_offered_again_and_run_once_by_the_next(
    processes: Processes, approved_model: Any, alice: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    require_mount_namespace(tmp_path / "probe")
    monkeypatch.setenv("WARDEN_AGENT_ACK_SECONDS", str(ACK_SECONDS))
    disk = tmp_path / "host"
    disk.mkdir()
    plant(tmp_path / "seed")

    # given a host whose disk is 97% full, the disk runbook pointed at its scratch root
    host, key = add_host("real-02", now=timezone.now())
    runbook = Runbook.objects.get(name=RUNBOOK)
    runbook.argv = [*runbook.argv, "--root", str(disk)]
    runbook.rollback_argv = [*runbook.rollback_argv, "--root", str(disk)]
    save_runbook(runbook, actor=alice, reason="scratch root for the test", now=timezone.now())
    entries = {runbook.action: runbook.argv, runbook.rollback_action: runbook.rollback_argv}
    url = start_web(processes)
    processes.start("qcluster", "manage.py", "qcluster")

    def logs() -> str:
        return "\n".join(
            f"--- {name}\n{processes.log(name)[-4000:]}"
            for name in ("web", "live", "qcluster", "agent")
            if (processes.logs / f"{name}.log").exists()
        )

    # and an agent that reported the full disk, took the fix from its poll and died before
    # it said it started (so before it ran anything)
    [result] = post_sample(
        url,
        key,
        {"host": host.name, "taken_at": timezone.now().isoformat(), **HEALTHY, **PROBLEMS["disk"]},
    )["results"]
    assert result["decision"] == "AUTO_HEAL", result
    wait_until(
        lambda: Execution.objects.filter(host=host, state="dispatched").exists(),
        60,
        "the fix to be dispatched",
        logs,
    )
    [taken] = take_and_vanish(url, key)
    execution = Execution.objects.get(host=host)
    assert execution.state == "claimed"

    # when the host's agent starts again, on the same full disk
    config = write_agent_files(
        tmp_path / "agent", url=url, host=host.name, key=key, disk=disk, entries=entries
    )
    agent = processes.start_program(
        "agent",
        *("unshare", "--mount", "--propagation", "private", "sh", "-c", AGENT_SHELL, "sh"),
        *(str(disk), str(tmp_path / "seed"), str(AGENT), str(config)),
    )

    # then the claim is offered to it again, with the same token, and it runs it once: the
    # host's fresh readings verify the fix and resolve the ticket
    wait_until(
        lambda: Ticket.objects.filter(pk=execution.ticket_id, status="resolved").exists(),
        120,
        "the ticket to be resolved by the agent that came back",
        logs,
    )
    execution.refresh_from_db()
    assert execution.state == "succeeded"
    assert execution.fencing_token == taken["token"]
    events = list(
        AuditEvent.objects.filter(object_id=str(execution.pk)).values_list("action", "actor")
    )
    actions = [action for action, _ in events]
    assert actions.count("execution.claimed") >= 2
    assert actions.count("execution.offered_again") >= 1
    assert actions.count("execution.started") == 1
    assert ("execution.started", f"agent:{host.name}") in events
    for never in ("execution.failed", "execution.rollback_pending", "execution.cancelled"):
        assert never not in actions, (never, actions)
    assert processes.log("agent").count(f"ran {runbook.action} -> ok") == 1
    batch = on_host(agent.pid, disk, f"/var/lib/warden-agent/quarantine/{execution.pk}")
    assert (batch / "manifest.json").exists()

    # and its automation counts one success, no failure
    pattern = Pattern.objects.get(pk=execution.ticket.pattern_id)
    assert (pattern.auto_remediation_attempts, pattern.auto_remediation_successes) == (1, 1)

    agent.terminate()
    assert agent.wait(timeout=30) == 0, logs()
