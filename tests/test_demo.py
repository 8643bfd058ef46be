"""The first README command, run as a person runs it: set up once, reuse, Ctrl-C stops it all."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One worker runs both tests under `make test` (pytest-xdist's loadgroup): the second
# starts the demo the first set up, as a person does, instead of setting it up again.
# First, beside the test database's migration (tests/conftest.py).
pytestmark = [pytest.mark.xdist_group("demo"), pytest.mark.early]


def demo_env(data_dir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "DATABASE_URL"))}
    # The embedded mode the README promises, whatever the test run's own environment.
    return {**keep, "WARDEN_DATA_DIR": str(data_dir), "REDIS_URL": "", "WARDEN_ENV": "embedded"}


def processes_using(data_dir: Path) -> list[int]:
    """Processes whose environment names this demo's data folder."""
    found = []
    needle = f"WARDEN_DATA_DIR={data_dir}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo")


def test_a_second_setup_reuses_the_model_accounts_and_fleet(data_dir):
    def setup() -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", "run_demo", "--setup-only", "--hosts", "6"],
            cwd=ROOT,
            env=demo_env(data_dir),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = setup()
    keys = (data_dir / "fleet-keys.json").read_text()
    second = setup()

    assert "Training and approving a first severity model" in first
    # ordinary people in their roles, each with the email their notices go to
    for line in (
        "Created supervisor (supervisors, supervisor@example.com) with password: ",
        "Created approver (approvers, approver@example.com) with password: ",
        "Created compliance (compliance, compliance@example.com) with password: ",
    ):
        assert line in first
    assert "Training" not in second and "with password:" not in second
    assert "Account supervisor exists" in second
    # the demo's track record makes disk, memory and CPU patterns known good, once
    assert "Track record: 9 past tickets resolved and rated by people; 3 patterns" in first
    assert "Track record" not in second
    assert (data_dir / "fleet-keys.json").read_text() == keys


def test_ctrl_c_stops_every_process_it_started(data_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # A terminal sends Ctrl-C to its whole foreground process group: so does this test.
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "run_demo", "--hosts", "6", "--port", str(port)],
        cwd=ROOT,
        env=demo_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = ""
        for line in demo.stdout:
            output += line
            if "Press Ctrl-C" in line:
                break
        assert "Warden is running" in output, output
        started = processes_using(data_dir)
        assert len(started) >= 4  # run_demo, gunicorn and its workers, qcluster, fleet

        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)

        deadline = time.monotonic() + 15
        while processes_using(data_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_using(data_dir) == []
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for pid in processes_using(data_dir):
            os.kill(pid, signal.SIGKILL)
