"""warden-runbook as a command: the catalogue's argv, usage errors, the summary line, and
drop-caches (in a scratch root, and on this machine's kernel when it lets us)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.runbook_runs import AGENT_DIR, Run, run_runbook
from warden_agent.runbooks.cli import build_parser

# The catalogue: every action's argv template (the agent's example allow-list is this).
CATALOGUE = {
    "clean_temp_and_rotate_logs": "warden-runbook disk-quarantine --temp-dir /tmp --temp-dir "
    "/var/tmp --log-dir /var/log --older-than-days 7 --quarantine /var/lib/warden-agent/quarantine",
    "restore_quarantined_files": "warden-runbook disk-restore --quarantine "
    "/var/lib/warden-agent/quarantine",
    "rotate_logs": "warden-runbook rotate-logs --config /etc/logrotate.d/app",
    "restart_leaking_service": "warden-runbook restart-unit --unit app.service --check-active "
    "--timeout 30",
    "restart_service": "warden-runbook restart-unit --unit app.service --timeout 30",
    "drop_page_cache": "warden-runbook drop-caches",
    "throttle_runaway_process": "warden-runbook cpu-throttle --unit app.service --quota 50%",
    "remove_cpu_throttle": "warden-runbook cpu-unthrottle --unit app.service",
    "restart_dns_resolver": "warden-runbook dns-flush --resolver-unit systemd-resolved.service "
    "--check-name localhost",
    "switch_dns_resolver": "warden-runbook dns-switch --interface eth0 --server 10.0.0.53",
    "restore_dns_resolver": "warden-runbook dns-revert --interface eth0",
    "apply_firewall_change": "warden-runbook nft-apply --file /etc/warden/requested-change.nft",
    "revert_firewall_change": "warden-runbook nft-revert",
    "block_address": "warden-runbook nft-block --address {address:ip} --timeout 1h",
    "unblock_address": "warden-runbook nft-unblock --address {address:ip}",
    "rate_limit_port": "warden-runbook nft-rate-limit --port {port:port} --rate 100/second",
    "remove_rate_limit": "warden-runbook nft-remove-rate-limit --port {port:port}",
    "restart_web_service": "warden-runbook restart-unit --unit nginx.service --check-http "
    "http://127.0.0.1/ --timeout 30",
}
SAMPLES = {"{address:ip}": "203.0.113.9", "{port:port}": "8080"}


def runbook(*args: str, execution_id: str | None = None) -> Run:
    return run_runbook(*args, execution_id=execution_id, timeout=60)


def filled(template: list[str]) -> list[str]:
    return [SAMPLES.get(element, element) for element in template]


@pytest.mark.parametrize("action", sorted(CATALOGUE))
def test_every_catalogue_argv_is_accepted(action: str) -> None:
    argv = filled(CATALOGUE[action].split())

    args = build_parser().parse_args(argv[1:])

    assert args.command == argv[1]


def test_the_example_allow_list_matches_the_catalogue() -> None:
    example = AGENT_DIR / "examples" / "allowlist.json"
    if not example.exists():
        pytest.skip("the agent's example allow-list is not there yet")
    entries = json.loads(example.read_text())
    runbooks = {name: argv for name, argv in entries.items() if argv[:1] == ["warden-runbook"]}
    assert {name: " ".join(argv) for name, argv in runbooks.items()} == CATALOGUE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: RUNBOOK"),
        (["reboot"], "invalid choice: 'reboot'"),
        (["restart-unit"], "the following arguments are required: --unit"),
        (["restart-unit", "--unit", "-rf.service"], "expected one argument"),
        (["restart-unit", "--unit", "app"], "'app' is not a systemd unit name"),
        (["restart-unit", "--unit", "a.service", "--check-tcp", "nope"], "'nope' is not HOST:PORT"),
        (["restart-unit", "--unit", "a.service", "--check-http", "ftp://x/"], "not an http://"),
        (["nft-block", "--address", "10.0.0.1/8"], "has host bits set"),
        (["nft-block", "--address", "example.com"], "is not an IP address or network"),
        (["nft-block", "--address", "192.0.2.1", "--timeout", "forever"], "is not a timeout"),
        (["nft-rate-limit", "--port", "70000"], "is not a port (1..65535)"),
        (["nft-rate-limit", "--port", "80", "--rate", "fast"], "is not a rate"),
        (["cpu-throttle", "--unit", "a.service", "--quota", "half"], "must be a percentage"),
        (["cpu-throttle", "--unit", "a.timer", "--quota", "50%"], "has no cgroup"),
        (["dns-switch", "--interface", "eth0", "--server", "dns.example"], "not an IP address"),
        (["rotate-logs", "--config", "relative/app"], "is not an absolute path"),
        (["disk-purge", "--retention-days", "0"], "must be at least 1"),
        (["disk-quarantine", "--batch", "1"], "give at least one --temp-dir or --log-dir"),
        (["disk-restore", "--batch", "../etc"], "must be letters, digits"),
        (["disk-quarantine", "--temp-dir", "/tmp", "--temp"], "unrecognized arguments: --temp"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(args: list[str], message: str) -> None:
    run = runbook(*args)

    assert run.exit_code == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("warden-runbook")
    assert message in lines[0]


def test_help_lists_every_runbook() -> None:
    run = runbook("--help")

    assert run.exit_code == 0
    for template in CATALOGUE.values():
        assert template.split()[1] in run.stdout


# ---------------------------------------------------------------- drop-caches


def fake_proc(root: Path, mem_available_kib: int = 2048000) -> Path:
    vm = root / "proc/sys/vm"
    vm.mkdir(parents=True)
    target = vm / "drop_caches"
    target.write_text("")
    (root / "proc/meminfo").write_text(
        f"MemTotal:        8000000 kB\nMemFree:          100000 kB\n"
        f"MemAvailable:    {mem_available_kib} kB\n"
    )
    return target


def test_drop_caches_writes_3_and_reports_memory(tmp_path: Path) -> None:
    target = fake_proc(tmp_path)

    run = runbook("drop-caches", "--root", str(tmp_path))

    assert run.exit_code == 0, run.stderr
    assert target.read_text() == "3\n"
    assert run.stdout.splitlines()[:3] == [
        "MemAvailable before: 2000 MiB",
        "sync",
        "write 3 to /proc/sys/vm/drop_caches",
    ]
    assert run.summary["mem_available_kib_before"] == 2048000
    assert run.summary["result"] == "done"


def test_drop_caches_dry_run_and_once_per_execution(tmp_path: Path) -> None:
    target = fake_proc(tmp_path)

    dry = runbook("drop-caches", "--root", str(tmp_path), "--dry-run")
    assert dry.exit_code == 0
    assert "would run sync, then write 3 to /proc/sys/vm/drop_caches" in dry.stdout
    assert target.read_text() == ""

    first = runbook("drop-caches", "--root", str(tmp_path), execution_id="9")
    target.write_text("")
    second = runbook("drop-caches", "--root", str(tmp_path), execution_id="9")
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert second.summary["result"] == "nothing_to_do"
    assert target.read_text() == ""


def test_drop_caches_without_the_kernel_file_is_refused(tmp_path: Path) -> None:
    run = runbook("drop-caches", "--root", str(tmp_path))

    assert run.exit_code == 3
    assert run.summary["result"] == "refused"
    assert run.stderr.strip() == (
        "refused: /proc/sys/vm/drop_caches does not exist (not Linux, or /proc is not mounted)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    not os.access("/proc/sys/vm/drop_caches", os.W_OK),
    reason="this machine's /proc/sys/vm/drop_caches is not writable (not root, or read-only)",
)
def test_drop_caches_on_this_machine_s_kernel(tmp_path: Path) -> None:
    run = runbook("drop-caches", "--state-dir", str(tmp_path))

    assert run.exit_code == 0, run.stderr
    assert run.summary["mem_available_kib_after"] > 0


# ---------------------------------------------------------------- the purge timer

SYSTEMD_DIR = AGENT_DIR / "systemd"


def test_the_purge_service_runs_disk_purge_on_the_catalogue_quarantine(tmp_path: Path) -> None:
    service = (SYSTEMD_DIR / "warden-quarantine-purge.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    argv = exec_start.removeprefix("ExecStart=").split()
    assert argv == [
        "/opt/warden-agent/bin/warden-runbook",
        "disk-purge",
        "--quarantine",
        "/var/lib/warden-agent/quarantine",
        "--retention-days",
        "14",
    ]
    old_batch = tmp_path / "var/lib/warden-agent/quarantine/1"
    old_batch.mkdir(parents=True)
    os.utime(old_batch, (0, 0))  # no manifest: the folder's age counts

    run = runbook(*argv[1:], "--root", str(tmp_path))

    assert run.exit_code == 0, run.stderr
    assert run.summary["batches_deleted"] == ["1"]
    assert not old_batch.exists()
    timer = (SYSTEMD_DIR / "warden-quarantine-purge.timer").read_text()
    assert "OnCalendar=daily" in timer
    assert "Persistent=true" in timer


def test_systemd_accepts_the_purge_timer_and_service(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package has it)")
    # verify wants ExecStart to exist: point it at this environment's console script.
    script = Path(sys.executable).parent / "warden-runbook"
    for name in ("warden-quarantine-purge.service", "warden-quarantine-purge.timer"):
        text = (SYSTEMD_DIR / name).read_text()
        (tmp_path / name).write_text(
            text.replace("/opt/warden-agent/bin/warden-runbook", str(script))
        )

    done = subprocess.run(
        [analyze, "verify", "warden-quarantine-purge.timer", "warden-quarantine-purge.service"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "warden-quarantine-purge" not in done.stderr, done.stderr
