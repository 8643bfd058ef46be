"""The agent program against a tiny fake Warden API (http.server on 127.0.0.1), no Django."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from remediation.agent import (
    OUTPUT_LIMIT,
    SIMULATED_ACTIONS,
    Agent,
    CommandExecutor,
    Executor,
    SimulatedExecutor,
    SimulatedMetrics,
    Unavailable,
    make_sample,
)
from scoring import scenarios
from scoring.scenarios import SimulatedHost

KEY = "test-key-web-01"
REPO = Path(__file__).resolve().parents[2]
FIELDS = {
    "host",
    "taken_at",
    "disk_usage",
    "memory_usage",
    "cpu_usage",
    "dns_latency_ms",
    "firewall_change_requested",
}


class FakeWarden:
    """Answers like Warden's agent API and records every request it gets."""

    def __init__(self, listen: bool = True, keys: tuple[str, ...] = (KEY,)) -> None:
        self.keys = {f"Bearer {key}" for key in keys}
        self.requests: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.metrics_status = 201
        self.result_status = 200
        self.changed = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.answer(self)

            def do_POST(self) -> None:
                fake.answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        # Bound now (the port is ours), listening only from start(): until then the agent
        # sees "connection refused", as with a server that is down.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread: threading.Thread | None = None
        if listen:
            self.start()

    def start(self) -> None:
        self.server.server_activate()
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        if self.thread:
            self.server.shutdown()
        self.server.server_close()

    def give(self, *actions: dict[str, Any]) -> None:
        with self.changed:
            self.actions.extend(actions)
            self.changed.notify_all()

    def made(self, method: str, path_prefix: str) -> list[dict[str, Any]]:
        with self.changed:
            return [
                r
                for r in self.requests
                if r["method"] == method and r["path"].startswith(path_prefix)
            ]

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        with self.changed:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": url.path,
                    "query": urllib.parse.parse_qs(url.query),
                    "auth": handler.headers.get("Authorization"),
                    "body": body,
                }
            )
        if handler.headers.get("Authorization") not in self.keys:
            return self.send(handler, 401, error("authentication_failed", "Unknown API key."))
        if handler.command == "POST" and url.path == "/api/v1/metrics":
            return self.metrics(handler, body)
        if handler.command == "GET" and url.path == "/api/v1/agent/actions":
            wait = float(urllib.parse.parse_qs(url.query)["wait"][0])
            with self.changed:
                self.changed.wait_for(lambda: self.actions, timeout=wait)
                actions, self.actions = self.actions, []
            return self.send(handler, 200, {"actions": actions})
        if handler.command == "POST" and url.path.endswith("/result"):
            if self.result_status == 409:
                return self.send(handler, 409, error("stale_token", "A newer claim exists."))
            execution_id = int(url.path.split("/")[-2])
            return self.send(handler, 200, {"execution_id": execution_id, "state": "succeeded"})
        return self.send(handler, 404, error("not_found", "Not found."))

    def metrics(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        if self.metrics_status == 400:
            return self.send(handler, 400, error("invalid", "disk_usage: too big"))
        if self.metrics_status == 503:
            return self.send(handler, 503, error("model_unavailable", "No approved model."))
        samples = body if isinstance(body, list) else [body]
        results = [
            {
                "taken_at": sample["taken_at"],
                "severity": "AUTO_HEAL" if sample["disk_usage"] > 90 else "NO_ACTION",
                "confidence": 0.9,
                "category": "disk" if sample["disk_usage"] > 90 else None,
                "decision": "AUTO_HEAL" if sample["disk_usage"] > 90 else "NO_ACTION",
                "ticket_id": "INC-000004" if sample["disk_usage"] > 90 else None,
                "explanation": [],
            }
            for sample in samples
        ]
        self.send(handler, 201, {"host": samples[0]["host"], "results": results})

    def send(self, handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": {}}}


def action(name: str, execution_id: int = 7, token: int = 3) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "token": token,
        "kind": "run",
        "action": name,
        "runbook": "Disk cleanup",
        "ticket_id": "INC-000004",
        "lease_expires_at": "2030-01-01T00:00:00+00:00",
    }


class HealthyMetrics:
    def read(self) -> dict[str, Any]:
        return make_sample("web-01", datetime.now(UTC), 45.0, 50.0, 25.0, 18.0, 0)


class RecordingExecutor(Executor):
    allowed = frozenset({"fix_it"})

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, action: str) -> tuple[bool, str]:
        self.ran.append(action)
        return True, "fixed"


def wait_until(condition: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


@pytest.fixture
def fake() -> Iterator[FakeWarden]:
    server = FakeWarden()
    yield server
    server.close()


@pytest.fixture
def start() -> Iterator[Callable[..., tuple[Agent, threading.Thread]]]:
    """Start an agent in a thread (fast interval and back-off); stopped after the test."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start_agent(
        url: str, executor: Executor | None = None, key: str = KEY
    ) -> tuple[Agent, threading.Thread]:
        agent = Agent(
            url,
            key,
            "web-01",
            HealthyMetrics(),
            executor or RecordingExecutor(),
            interval=0.05,
            poll_wait=0.5,
            timeout=2.0,
            backoff_start=0.05,
            backoff_max=0.1,
        )
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread))
        return agent, thread

    yield start_agent
    for stop, _ in running:
        stop.set()
    for _, thread in running:
        thread.join(timeout=5)
        assert not thread.is_alive(), "the agent did not stop when asked"


def test_posts_readings_with_the_bearer_key_and_documented_fields(fake, start):
    start(fake.url)

    posts = wait_until(lambda: fake.made("POST", "/api/v1/metrics")[1:])

    for post in posts:
        assert post["auth"] == f"Bearer {KEY}"
        sample = post["body"]
        assert isinstance(sample, dict)  # one sample alone, not a list of one
        assert set(sample) == FIELDS
        assert sample["host"] == "web-01"
        assert datetime.fromisoformat(sample["taken_at"]).tzinfo is not None
        assert sample["firewall_change_requested"] in (0, 1)
        assert all(
            isinstance(sample[f], float)
            for f in FIELDS - {"host", "taken_at"} - {"firewall_change_requested"}
        )
    polls = fake.made("GET", "/api/v1/agent/actions")
    assert polls and all(float(p["query"]["wait"][0]) == 0.5 for p in polls)


def test_runs_an_allow_listed_action_and_reports_ok_with_its_token(fake, start, caplog):
    caplog.set_level(logging.INFO, logger="warden.agent")
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(action("fix_it", execution_id=7, token=3))

    (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/"))

    assert report["path"] == "/api/v1/agent/actions/7/result"
    assert report["auth"] == f"Bearer {KEY}"
    assert report["body"] == {"token": 3, "ok": True, "output": "fixed"}
    assert executor.ran == ["fix_it"]
    assert "web-01: ran fix_it -> ok" in caplog.text


def test_refuses_an_action_that_is_not_allow_listed_without_running_it(fake, start):
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(action("drop_database", execution_id=8, token=1))

    (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/"))

    assert report["path"] == "/api/v1/agent/actions/8/result"
    assert report["body"] == {
        "token": 1,
        "ok": False,
        "output": "action drop_database is not allow-listed on this agent",
    }
    assert executor.ran == []


def test_buffers_readings_while_the_server_is_down_and_sends_them_as_one_batch(start):
    fake = FakeWarden(listen=False)
    try:
        agent, _ = start(fake.url)
        wait_until(lambda: len(agent.buffer) >= 3)
        fake.start()

        first = wait_until(lambda: fake.made("POST", "/api/v1/metrics"))[0]

        assert isinstance(first["body"], list) and len(first["body"]) >= 3
        stamps = [sample["taken_at"] for sample in first["body"]]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        wait_until(lambda: not agent.buffer)
    finally:
        fake.close()


def test_keeps_readings_while_the_server_has_no_model_and_drops_a_refused_batch(fake):
    agent = Agent(fake.url, KEY, "web-01", HealthyMetrics(), RecordingExecutor())
    fake.metrics_status = 503
    for _ in range(2):
        agent.collect()
        with pytest.raises(Unavailable):
            agent.flush()
    assert len(agent.buffer) == 2

    fake.metrics_status = 400  # never valid: dropped, not retried for ever
    agent.flush()
    assert not agent.buffer
    assert len(fake.made("POST", "/api/v1/metrics")[-1]["body"]) == 2

    fake.metrics_status = 201
    agent.collect()
    agent.flush()
    assert isinstance(fake.made("POST", "/api/v1/metrics")[-1]["body"], dict)
    assert not agent.buffer


def test_a_409_on_the_report_is_not_retried(fake, start):
    fake.result_status = 409
    agent, thread = start(fake.url)
    fake.give(action("fix_it"))

    wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/"))
    time.sleep(0.3)  # several more cycles

    assert len(fake.made("POST", "/api/v1/agent/actions/")) == 1
    assert not agent.unreported
    assert thread.is_alive()


def test_a_401_stops_the_agent(fake, start):
    agent, thread = start(fake.url, key="wrong-key")

    thread.join(timeout=3)

    assert not thread.is_alive()
    assert "401" in agent.error
    assert len(fake.made("POST", "/api/v1/metrics")) == 1  # no hammering with a bad key


def test_simulated_executor_heals_a_filling_disk():
    host = SimulatedHost("demo-03", "disk_filling", 3, datetime.now(UTC), 5.0)
    metrics, executor = SimulatedMetrics(host), SimulatedExecutor(host)
    disk = [metrics.read()["disk_usage"] for _ in range(100)]
    assert max(disk) >= 85, "the scenario never filled the disk"
    assert disk[-1] >= 85  # the first episode stays until healed

    ok, output = executor.execute("clean_temp_and_rotate_logs")

    assert ok and output.startswith("clean_temp_and_rotate_logs: disk")
    assert metrics.read()["disk_usage"] < 85
    assert executor.execute("rm_rf") == (False, "action rm_rf is not allow-listed on this agent")


def test_simulated_allow_list_is_the_simulators_action_set():
    assert set(SIMULATED_ACTIONS) == set(scenarios.ACTIONS)


def test_command_executor_runs_allow_listed_argv_and_refuses_others(tmp_path):
    allow_list = tmp_path / "actions.json"
    allow_list.write_text(
        json.dumps(
            {
                "say_hi": [sys.executable, "-c", "print('hi')"],
                "fail": [sys.executable, "-c", "import sys; print('no'); sys.exit(3)"],
                "chatty": [sys.executable, "-c", "print('x' * 20000)"],
            }
        )
    )
    executor = CommandExecutor.from_file(allow_list, timeout=10)

    assert executor.execute("say_hi") == (True, "hi\n")
    ok, output = executor.execute("fail")
    assert not ok and "no" in output and "exit code 3" in output
    ok, output = executor.execute("chatty")
    assert ok and len(output) <= OUTPUT_LIMIT
    assert executor.execute("say_bye") == (
        False,
        "action say_bye is not allow-listed on this agent",
    )


def run_cli(*args: str, **kwargs: Any) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    return subprocess.Popen(
        [sys.executable, "-m", "remediation.agent", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_fleet_with_an_unreadable_keys_file_exits_with_one_line(tmp_path):
    process = run_cli("fleet", "--url", "http://127.0.0.1:9", "--keys", str(tmp_path / "no"))
    _, stderr = process.communicate(timeout=10)

    assert process.returncode != 0
    assert len(stderr.strip().splitlines()) == 1
    assert "keys file" in stderr


def test_the_agent_module_imports_no_django():
    code = "import sys, remediation.agent; print(sorted(m for m in sys.modules if 'django' in m))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def hosts_posted(fake: FakeWarden) -> set[str]:
    bodies = [r["body"] for r in fake.made("POST", "/api/v1/metrics")]
    return {s["host"] for body in bodies for s in (body if isinstance(body, list) else [body])}


def test_fleet_runs_every_host_and_stops_cleanly_on_sigterm(fake, tmp_path):
    fake.keys = {f"Bearer key-{n}" for n in (1, 2)}
    keys = tmp_path / "fleet-keys.json"
    hosts = [{"name": f"demo-0{n}", "key": f"key-{n}", "scenario": "healthy"} for n in (1, 2)]
    keys.write_text(json.dumps({"hosts": hosts}))
    process = run_cli("fleet", "--url", fake.url, "--keys", str(keys), "--interval", "0.05")
    try:
        wait_until(lambda: hosts_posted(fake) == {"demo-01", "demo-02"}, timeout=8)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
