"""Integration tests run real processes against PostgreSQL and Redis.

Without DATABASE_URL (postgres) and REDIS_URL they skip on a developer's
machine and fail under CI, where .ci/run provides both.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def servers() -> None:
    missing = []
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        missing.append("DATABASE_URL=postgres://...")
    if not os.environ.get("REDIS_URL"):
        missing.append("REDIS_URL")
    if missing:
        message = f"integration tests need {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a Warden process sharing this test's database."""
    db = connection.settings_dict
    url = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "WARDEN_DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": settings.SECRET_KEY,  # so a session made here is valid there
        "WARDEN_MODEL_DIR": str(settings.MODEL_DIR),
        "WARDEN_MODEL_REFRESH_SECONDS": "0.5",
        "PYTHONPATH": str(ROOT),
    }


class Processes:
    def __init__(self, tmp_path: Path, logs: Path) -> None:
        self.tmp_path = tmp_path
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        # The environment is read now, after fixtures such as approved_model set MODEL_DIR.
        env = process_env(self.tmp_path)
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.running.append((name, process))
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def stop(self) -> None:
        for _, process in self.running:
            process.terminate()
        for _, process in self.running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def processes(servers: None, tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Processes(tmp_path, logs)
    yield running
    running.stop()


def start_web(processes: Processes) -> str:
    port = free_port()
    processes.start(
        "web",
        "-m",
        "gunicorn",
        "config.asgi:application",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return url
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"web server did not start:\n{processes.log('web')}")


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


@pytest.fixture(autouse=True)
def tasks_run_inline() -> None:
    """Here tasks go through the real broker to a real qcluster, not inline (see tests/conftest)."""
