"""rotate-logs with the real logrotate, on log files in a scratch root.

logrotate comes from Debian's package `logrotate`; when CI=1 a missing logrotate fails.
"""

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.runbook_runs import Run, run_runbook


def require_logrotate() -> None:
    if shutil.which("logrotate") is None:
        if os.environ.get("CI"):
            pytest.fail("logrotate is not installed (apt-get install logrotate)")
        pytest.skip("logrotate is not installed")


def runbook(*args: str, execution_id: str | None = None) -> Run:
    return run_runbook(*args, execution_id=execution_id)


@dataclass
class Logs:
    root: Path
    app_log: Path
    worker_log: Path

    def args(self, *extra: str) -> list[str]:
        return ["rotate-logs", "--root", str(self.root), "--config", "/etc/logrotate.d/app", *extra]

    def write_config(self, body: str) -> None:
        config = self.root / "etc/logrotate.d/app"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(body)
        os.chmod(config, 0o644)


@pytest.fixture
def logs(tmp_path: Path) -> Logs:
    require_logrotate()
    root = tmp_path / "root"
    log_dir = root / "var/log/app"
    log_dir.mkdir(parents=True)
    os.chmod(log_dir, 0o755)
    found = Logs(root, log_dir / "app.log", log_dir / "worker.log")
    found.app_log.write_text("line one\nline two\n")
    found.worker_log.write_text("worker line\n")
    # The paths inside the configuration are read by logrotate as written: absolute ones.
    found.write_config(
        f"{log_dir}/*.log {{\n  rotate 3\n  compress\n  missingok\n  notifempty\n"
        "  create 0640\n}\n"
    )
    return found


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_rotates_every_log_with_content_and_keeps_the_content(logs: Logs) -> None:
    run = runbook(*logs.args())

    assert run.exit_code == 0, run.stderr
    assert run.summary["result"] == "done"
    assert sorted(run.summary["logs_rotated"]) == sorted([str(logs.app_log), str(logs.worker_log)])
    assert "run: logrotate --force --state" in run.stdout
    rotated = logs.app_log.with_name("app.log.1.gz")
    assert gzip.decompress(rotated.read_bytes()) == b"line one\nline two\n"
    assert logs.app_log.read_bytes() == b""  # `create` made a new, empty one
    assert oct(os.stat(logs.app_log).st_mode & 0o777) == oct(0o640)
    assert (logs.root / "var/lib/warden-agent/state/logrotate.status").is_file()


def test_second_run_has_nothing_to_do(logs: Logs) -> None:
    assert runbook(*logs.args()).exit_code == 0

    again = runbook(*logs.args())

    assert again.exit_code == 0
    assert again.summary["result"] == "nothing_to_do"
    assert not logs.app_log.with_name("app.log.2.gz").exists()


def test_the_same_execution_rotates_once(logs: Logs) -> None:
    assert runbook(*logs.args(), execution_id="7").exit_code == 0
    logs.app_log.write_text("written after the rotation\n")

    same = runbook(*logs.args(), execution_id="7")
    other = runbook(*logs.args(), execution_id="8")

    assert same.summary["result"] == "nothing_to_do"
    assert "this execution already rotated" in same.stdout
    assert other.summary["result"] == "done"
    assert gzip.decompress(logs.app_log.with_name("app.log.1.gz").read_bytes()) == (
        b"written after the rotation\n"
    )


def test_dry_run_changes_nothing(logs: Logs) -> None:
    before = snapshot(logs.root)

    run = runbook(*logs.args("--dry-run"))

    assert run.exit_code == 0, run.stderr
    assert run.summary["result"] == "dry_run"
    assert "would run: logrotate --force --state" in run.stdout
    assert snapshot(logs.root) == before
    assert not (logs.root / "var/lib/warden-agent").exists()


def test_a_configuration_logrotate_rejects_is_refused(logs: Logs) -> None:
    logs.write_config(f"{logs.app_log} {{\n  rotate three\n}}\n")
    before = snapshot(logs.root)

    run = runbook(*logs.args())

    assert run.exit_code == 3
    assert "logrotate does not accept /etc/logrotate.d/app" in run.stderr
    assert snapshot(logs.root) == before


def test_a_missing_configuration_is_refused(logs: Logs) -> None:
    run = runbook("rotate-logs", "--root", str(logs.root), "--config", "/etc/logrotate.d/none")

    assert run.exit_code == 3
    assert run.stderr.strip() == "refused: /etc/logrotate.d/none is not a file"


def test_post_check_fails_when_logrotate_leaves_the_log_as_it_was(logs: Logs) -> None:
    # `copy` makes a copy and leaves the original untouched: logrotate exits 0, the disk is
    # no emptier, and the runbook says so.
    logs.write_config(f"{logs.app_log} {{\n  rotate 3\n  copy\n}}\n")

    run = runbook(*logs.args())

    assert run.exit_code == 1
    assert run.summary["result"] == "failed"
    assert f"did not rotate {logs.app_log}" in run.stderr
