"""Integration tests run real processes against PostgreSQL and Redis.

Without DATABASE_URL (postgres) and REDIS_URL they skip on a developer's
machine and fail under CI, where .ci/run provides both.
"""

import copy
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection
from django_q.conf import Conf

from bench.servers import front_command

ROOT = Path(__file__).resolve().parents[2]


def redis_url_of_this_worker(url: str) -> str:
    """Under pytest-xdist each worker's processes get a Redis database of their own (the
    URL's number plus the worker's): a qcluster takes tasks only from its own worker's
    queue, and the channel groups of one worker's consoles are not another's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    number = (base + int(worker.removeprefix("gw"))) % 16  # Redis has 16 by default
    return urlunsplit(parts._replace(path=f"/{number}"))


@pytest.fixture
def servers(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
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
    # This process and the ones it starts share this worker's Redis database: its tasks go
    # to their qcluster, and it publishes to their consoles with the default channel prefix
    # (tests/conftest.py gives each xdist worker a prefix of its own outside these tests).
    url = redis_url_of_this_worker(os.environ["REDIS_URL"])
    monkeypatch.setenv("REDIS_URL", url)
    settings.REDIS_URL = url
    monkeypatch.setattr(Conf, "REDIS", url)
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"].pop("prefix", None)
    layers["default"]["CONFIG"]["hosts"] = [
        {**layers["default"]["CONFIG"]["hosts"][0], "address": url}
    ]
    settings.CHANNEL_LAYERS = layers


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
        "WARDEN_AUDIT_KEY": settings.WARDEN_AUDIT_KEY,  # one chain, whoever writes it
        "WARDEN_AUDIT_SIGNING_KEY": settings.WARDEN_AUDIT_SIGNING_KEY,  # and one signer
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
        """A Python process: `args` as to `python`."""
        return self.start_program(name, sys.executable, *args)

    def start_program(self, name: str, program: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        # The environment is read now, after fixtures such as approved_model set MODEL_DIR.
        env = process_env(self.tmp_path)
        process = subprocess.Popen(
            [program, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
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
    """The production arrangement (README: Running in production; deploy/entrypoint.sh):
    gunicorn sync workers for the API and pages, one uvicorn worker for websockets and
    long polls, nginx in front with deploy/nginx/warden.conf.template. Returns its URL."""
    web_port, live_port, front_port = free_port(), free_port(), free_port()
    processes.start(
        "web",
        *("-m", "gunicorn", "config.wsgi:application", "-c", "config/gunicorn.py"),
        *("--worker-class", "sync", "-w", "2"),
        *("-b", f"127.0.0.1:{web_port}"),
    )
    processes.start(
        "live",
        *("-m", "gunicorn", "config.asgi:application", "-k", "uvicorn_worker.UvicornWorker"),
        *("-w", "1", "-b", f"127.0.0.1:{live_port}"),
    )
    start_front(processes, web_port, live_port, front_port)
    url = f"http://127.0.0.1:{front_port}"
    deadline = time.monotonic() + 60
    for path in ("/healthz", "/api/v1/agent/actions?wait=0"):  # web, then live, through nginx
        while True:
            try:
                with urllib.request.urlopen(f"{url}{path}", timeout=2):
                    break
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # live answered: no key given
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(processes.log(name) for name in ("web", "live", "front"))
                raise AssertionError(f"the servers did not start:\n{logs}")
            time.sleep(0.3)
    return url


def start_front(processes: Processes, web_port: int, live_port: int, port: int) -> None:
    """nginx (Debian's package; .ci/run installs it) rendering the production template."""
    try:
        command = front_command(
            processes.tmp_path / "nginx", web_port, live_port, port, workers=1, connections=1024
        )
    except SystemExit as exc:
        pytest.fail(str(exc))
    processes.start_program("front", *command)


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
