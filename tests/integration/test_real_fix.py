"""A real fix on a real (sandboxed) host: no simulation anywhere.

Warden's production servers (nginx, gunicorn web, uvicorn live, a qcluster, PostgreSQL and
Redis) and the real `warden-agent` process, which reads the usage of a real filesystem and
runs the real `warden-runbook disk-quarantine` and `disk-restore`. The host's filesystem is
a 16 MiB tmpfs mounted in a private mount namespace (`unshare --mount`), so nothing outside
it is touched; the runbook's `--root` points its /tmp, /var/tmp, /var/log and quarantine
into it. The test reads that filesystem through /proc/PID/root of the agent, which sees
the agent's mounts. Mounting needs root: where `unshare --mount` or the tmpfs is refused,
the test skips, and under CI (CI=1) it fails, as it does without PostgreSQL and Redis.
"""

import hashlib
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from governance.models import AuditEvent, Decision, Pause, PauseScope
from governance.pauses.actions import pause_automation
from remediation.actions import add_host, roll_back_execution, save_runbook
from remediation.models import Execution, Runbook, Ticket
from scoring.models import MetricSample
from tests.integration.conftest import Processes, start_web, wait_until
from warden_agent.argv import allowlist_digest, argv_digest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]

MiB = 1024 * 1024
TMPFS_SIZE = "16m"
RUNBOOK = "clean-temp-and-rotate-logs"
AGENT = Path(sys.executable).parent / "warden-agent"
# The agent mounts its host's filesystem, fills it from the seed tree, then becomes the agent
# (exec: the process the test started is the agent, and the mount lives exactly as long).
AGENT_SHELL = f"""set -e
mount -t tmpfs -o size={TMPFS_SIZE},mode=0755 tmpfs "$1"
cp -a "$2"/. "$1"/
df -k "$1"
exec "$3" run --config "$4"
"""


@dataclass(frozen=True)
class Planted:
    """A file put on the host before the agent starts: where, how big, and whether the
    runbook must take it (old temp files and old rotated logs) or leave it (young, live)."""

    path: str
    size: int
    mode: int
    moves: bool
    days_old: int = 30


PLANTED = [
    *(Planted(f"/tmp/export-{n:02d}.csv", MiB, 0o644, moves=True) for n in range(12)),
    Planted("/tmp/build-cache/step-01.txt", MiB, 0o600, moves=True),
    Planted("/tmp/build-cache/step-02.txt", MiB, 0o600, moves=True),
    Planted("/var/log/app.log.1", MiB, 0o640, moves=True),
    # Live logs and young temp files are never taken, however full the disk is.
    Planted("/var/log/app.log", 300 * 1024, 0o640, moves=False),
    Planted("/tmp/session-in-use.txt", 300 * 1024, 0o644, moves=False, days_old=0),
]


def log_text(seed: int, size: int) -> bytes:
    """`size` bytes of an application's request log: text that gzip shrinks about 5 times,
    as real logs do (repetitive lines, increasing timestamps)."""
    rng = random.Random(seed)
    at = datetime(2026, 11, 1) + timedelta(hours=seed)
    lines, length = [], 0
    while length < size:
        at += timedelta(milliseconds=rng.randint(1, 400))
        line = (
            f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z app[1042]: "
            f"{rng.choice(['GET', 'GET', 'POST'])} "
            f"{rng.choice(['/api/items', '/api/orders', '/login', '/static/app.js', '/healthz'])} "
            f"{rng.choice([200, 200, 200, 304, 404])} {rng.randint(1, 90)}ms\n"
        )
        lines.append(line)
        length += len(line)
    return "".join(lines).encode()[:size]


@dataclass(frozen=True)
class Facts:
    sha256: str
    mode: int
    mtime_ns: int


def facts_of(path: Path) -> Facts:
    st = path.stat()
    return Facts(hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode & 0o7777, st.st_mtime_ns)


def plant(seed_root: Path) -> dict[str, Facts]:
    """The host's files, written into a seed tree the agent copies onto its tmpfs (cp -a
    keeps modes and times). Returns each file's facts, taken before anything ran."""
    for folder in ("tmp", "var/tmp", "var/log"):
        (seed_root / folder).mkdir(parents=True, exist_ok=True)
    (seed_root / "tmp").chmod(0o1777)
    (seed_root / "var/tmp").chmod(0o1777)
    now = timezone.now().timestamp()
    planted = {}
    for seed, file in enumerate(PLANTED):
        path = seed_root / file.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(log_text(seed, file.size))
        path.chmod(file.mode)
        then = now - file.days_old * 86400
        os.utime(path, (then, then))
        planted[file.path] = facts_of(path)
    return planted


def mount_namespace_refusal(scratch: Path) -> str | None:
    """Why this machine will not give the agent a private tmpfs, or None when it will."""
    scratch.mkdir()
    command = [
        *("unshare", "--mount", "--propagation", "private"),
        *("sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && touch "$1/probe"', "sh"),
        str(scratch),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "unshare (util-linux) is not installed"
    if done.returncode != 0:
        return f"unshare --mount with a tmpfs is refused here: {done.stderr.strip()}"
    if any(scratch.iterdir()):
        return "the probe's tmpfs was not private to its mount namespace"
    return None


def require_mount_namespace(scratch: Path) -> None:
    refusal = mount_namespace_refusal(scratch)
    if refusal is None:
        return
    if os.environ.get("CI"):
        pytest.fail(refusal)
    pytest.skip(refusal)


def write_agent_files(
    folder: Path, *, url: str, host: str, key: str, disk: Path, entries: dict[str, list[str]]
) -> Path:
    """The agent's key file, allow-list and config, as an operator writes them; the spool
    stays outside the tmpfs so its growth does not change the disk being measured."""
    folder.mkdir(mode=0o700)
    key_file = folder / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    allowlist = folder / "allowlist.json"
    allowlist.write_text(json.dumps(entries, indent=2))
    settings = {
        "url": url,
        "host": host,
        "key_file": str(key_file),
        "allowlist": str(allowlist),
        "spool_dir": str(folder / "spool"),
        "disk_path": str(disk),
        "firewall_flag": str(folder / "firewall-change-requested"),  # never created
        "dns_name": "localhost",
    }
    config = folder / "agent.toml"
    # JSON strings are valid TOML basic strings for these plain paths.
    config.write_text(
        "".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items())
        + "interval = 1\npoll_wait = 20\naction_timeout = 60\n"
    )
    return config


def on_host(agent_pid: int, root: Path, logical: str) -> Path:
    """A path of the agent's tmpfs, seen from outside its mount namespace."""
    return Path(f"/proc/{agent_pid}/root") / root.relative_to("/") / logical.lstrip("/")


def runbook_summary(output: str) -> dict[str, Any]:
    """The JSON summary a runbook prints as its last line on stdout."""
    lines = [line for line in output.splitlines() if line.startswith('{"runbook"')]
    assert lines, f"no runbook summary in the output:\n{output}"
    return json.loads(lines[-1])


def audit(ticket: Ticket, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(ticket_id=ticket.ticket_id, action=action))


def test_a_full_disk_is_fixed_by_the_real_agent_and_rolled_back_byte_for_byte(
    processes: Processes, approved_model: Any, alice: Any, tmp_path: Path
) -> None:
    require_mount_namespace(tmp_path / "probe")
    disk = tmp_path / "host"  # the agent's tmpfs is mounted here, in its namespace only
    disk.mkdir()
    planted = plant(tmp_path / "seed")

    # given a host, and the disk runbook pointed at that host's scratch root by a supervisor
    host, key = add_host("real-01", now=timezone.now())
    runbook = Runbook.objects.get(name=RUNBOOK)
    runbook.argv = [*runbook.argv, "--root", str(disk)]
    runbook.rollback_argv = [*runbook.rollback_argv, "--root", str(disk)]
    save_runbook(
        runbook, actor=alice, reason="scratch root for the real-host test", now=timezone.now()
    )
    entries = {runbook.action: runbook.argv, runbook.rollback_action: runbook.rollback_argv}
    assert set(entries) == {"clean_temp_and_rotate_logs", "restore_quarantined_files"}

    # and Warden's production servers and a worker
    url = start_web(processes)
    processes.start("qcluster", "manage.py", "qcluster")

    # when the real agent starts on a 16 MiB filesystem 97% full of old, compressible files
    config = write_agent_files(
        tmp_path / "agent", url=url, host=host.name, key=key, disk=disk, entries=entries
    )
    agent = processes.start_program(
        "agent",
        *("unshare", "--mount", "--propagation", "private", "sh", "-c", AGENT_SHELL, "sh"),
        *(str(disk), str(tmp_path / "seed"), str(AGENT), str(config)),
    )

    def logs() -> str:
        return "\n".join(
            f"--- {name}\n{processes.log(name)[-4000:]}"
            for name in ("web", "live", "qcluster", "agent")
        )

    def disk_ticket() -> Ticket | None:
        return Ticket.objects.filter(host=host, category="disk").order_by("pk").first()

    wait_until(lambda: disk_ticket() is not None, 90, "a disk ticket for real-01", logs)
    ticket = disk_ticket()
    first = MetricSample.objects.filter(host=host).order_by("taken_at").first()
    assert first.disk_usage >= 96, f"the tmpfs was not filled as planned: {first.disk_usage}%"

    # then it is decided AUTO_HEAL with exactly the edited command
    decision = Decision.objects.filter(ticket=ticket).order_by("pk").first()
    assert decision.outcome == "AUTO_HEAL", (decision.outcome, decision.reasons, logs())
    assert decision.argv == runbook.argv
    assert decision.argv_digest == argv_digest(runbook.argv)

    # and the real agent runs it and fresh readings verify it: the ticket is resolved
    wait_until(
        lambda: Ticket.objects.filter(pk=ticket.pk, status="resolved").exists(),
        120,
        "the disk ticket to be resolved",
        logs,
    )
    execution = Execution.objects.get(ticket=ticket)
    assert execution.state == "succeeded"
    assert execution.decision_id == decision.pk
    assert execution.argv == runbook.argv
    assert execution.argv_digest == argv_digest(runbook.argv)
    assert execution.exit_code == 0

    # the agent itself said what it ran: the decided argv (the server checked its digest,
    # refusing any other), exit code 0, as the agent of real-01
    (reported,) = audit(ticket, "execution.verifying")
    assert reported.actor == "agent:real-01"
    assert reported.data["argv"] == runbook.argv
    assert reported.data["exit_code"] == 0
    assert not audit(ticket, "execution.report_refused")
    host.refresh_from_db()
    assert host.allowlist == entries
    assert host.allowlist_digest == allowlist_digest(entries)
    assert "allow-list sent: 2 action(s)" in processes.log("agent")
    assert "ran clean_temp_and_rotate_logs -> ok" in processes.log("agent")

    # the old files really left the host's /tmp and /var/log for the quarantine, gzipped,
    # with a manifest of their SHA-256; the young file and the live log stayed
    batch = on_host(agent.pid, disk, f"/var/lib/warden-agent/quarantine/{execution.pk}")
    manifest = json.loads((batch / "manifest.json").read_text())
    quarantined = {entry["path"]: entry for entry in manifest["files"]}
    moved = {file.path for file in PLANTED if file.moves}
    assert set(quarantined) == moved
    for path in moved:
        assert not on_host(agent.pid, disk, path).exists(), f"{path} is still in place"
        entry = quarantined[path]
        assert entry["state"] == "quarantined"
        assert entry["sha256"] == planted[path].sha256
        assert entry["stored_form"] == "gzip"
        assert (batch / entry["stored"]).stat().st_size < entry["size"] / 3
    for file in PLANTED:
        if not file.moves:
            assert facts_of(on_host(agent.pid, disk, file.path)) == planted[file.path]
    summary = runbook_summary(execution.output)
    assert summary["result"] == "done"
    assert summary["files_compressed"] == len(moved)

    # the reading that verified the fix shows the disk well below the problem level
    (succeeded,) = audit(ticket, "execution.succeeded")
    verifying_sample = MetricSample.objects.get(pk=succeeded.data["sample_id"])
    assert verifying_sample.taken_at >= execution.started_at
    assert verifying_sample.disk_usage < 70, verifying_sample.disk_usage
    assert "disk" not in (verifying_sample.categories or [verifying_sample.category])

    # when a supervisor pauses automation on the host (so the refilled disk is not cleaned
    # again) and rolls the fix back
    pause_automation(
        Pause(scope=PauseScope.HOST, host=host),
        actor=alice,
        reason="checking the cleaned files by hand",
        now=timezone.now(),
    )
    roll_back_execution(
        execution, actor=alice, reason="those exports were still wanted", now=timezone.now()
    )

    # then the real agent runs disk-restore, and every file is back, byte for byte
    wait_until(
        lambda: Execution.objects.filter(pk=execution.pk, state="rolled_back").exists(),
        90,
        "the rollback to be reported",
        logs,
    )
    execution.refresh_from_db()
    assert execution.rollback_exit_code == 0
    (restored,) = audit(ticket, "execution.rolled_back")
    assert restored.actor == "agent:real-01"
    assert restored.data["argv"] == runbook.rollback_argv
    assert restored.data["exit_code"] == 0
    for path, before in planted.items():
        assert facts_of(on_host(agent.pid, disk, path)) == before, f"{path} differs"
    manifest = json.loads((batch / "manifest.json").read_text())
    assert {entry["state"] for entry in manifest["files"]} == {"restored"}

    # and the host's readings show the disk full again: they measure that filesystem
    rolled_back_at = execution.finished_at
    wait_until(
        lambda: MetricSample.objects.filter(
            host=host, taken_at__gt=rolled_back_at, disk_usage__gte=96
        ).exists(),
        30,
        "a reading of the refilled disk",
        logs,
    )

    # finally the agent stops on SIGTERM, and its filesystem goes with it: nothing of it was
    # ever on the machine's own disk
    agent.terminate()
    assert agent.wait(timeout=30) == 0, logs()
    assert not Path(f"/proc/{agent.pid}").exists()
    assert list(disk.iterdir()) == []
