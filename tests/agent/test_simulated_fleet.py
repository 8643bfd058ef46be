"""Simulated hosts running the real agent: the demo's fleet (remediation.simulated_fleet)."""

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from remediation.simulated_fleet import (
    CATALOGUE,
    SimulatedExecutor,
    SimulatedMetrics,
    simulated_agent,
)
from scoring import scenarios
from scoring.scenarios import SimulatedHost
from tests.agent.fake_warden import KEY
from tests.agent.helpers import order, wait_until
from warden_agent.argv import argv_digest
from warden_agent.executor import Order, load_allowlist

REPO = Path(__file__).resolve().parents[2]


def catalogue_order(name: str, **changes: Any) -> Order:
    return Order.from_message(order(name, load_allowlist(CATALOGUE)[name], **changes))


def filling_disk() -> tuple[SimulatedHost, SimulatedMetrics, SimulatedExecutor]:
    host = SimulatedHost("demo-03", "disk_filling", 3, datetime.now(UTC), 5.0)
    metrics, executor = SimulatedMetrics(host), SimulatedExecutor(host)
    disk = [metrics.read()["disk_usage"] for _ in range(100)]
    assert max(disk) >= 85, "the scenario never filled the disk"
    assert disk[-1] >= 85  # the first episode stays until healed
    return host, metrics, executor


def test_simulated_executor_heals_a_filling_disk_and_reports_the_catalogue_argv():
    _, metrics, executor = filling_disk()
    sent = catalogue_order("clean_temp_and_rotate_logs")

    outcome = executor.execute(sent)

    assert outcome.ok and outcome.output.startswith("clean_temp_and_rotate_logs: disk")
    assert outcome.argv == list(sent.argv or ()) and outcome.argv[:2] == [
        "warden-runbook",
        "disk-quarantine",
    ]
    assert outcome.exit_code == 0
    assert metrics.read()["disk_usage"] < 85


CLEAN = "clean_temp_and_rotate_logs"
OUTSIDE = ["warden-runbook", "disk-quarantine", "--temp-dir", "/"]


@pytest.mark.parametrize(
    "tamper",
    [
        {"action": "rm_rf", "argv": ["rm", "-rf", "/"], "argv_digest": argv_digest(["rm"])},
        {"argv_digest": argv_digest(["warden-runbook", "disk-restore"])},
        {"argv": OUTSIDE, "argv_digest": argv_digest(OUTSIDE)},
    ],
    ids=["not allow-listed", "wrong digest", "outside the template"],
)
def test_the_simulated_executor_refuses_like_a_real_agent_and_changes_nothing(tamper):
    _, metrics, executor = filling_disk()
    message = order(CLEAN, load_allowlist(CATALOGUE)[CLEAN])
    message.update(tamper)

    outcome = executor.execute(Order.from_message(message))

    assert not outcome.ok and outcome.argv == []
    assert metrics.read()["disk_usage"] >= 85


def test_an_allow_listed_action_the_simulator_does_not_model_changes_nothing():
    _, metrics, executor = filling_disk()
    argv = ["warden-runbook", "nft-block", "--address", "192.0.2.7", "--timeout", "1h"]

    outcome = executor.execute(Order.from_message(order("block_address", argv)))

    assert outcome.ok and "not modelled by the simulator" in outcome.output
    assert outcome.argv == argv
    assert metrics.read()["disk_usage"] >= 85


def test_every_simulated_action_is_in_the_catalogue_allow_list():
    assert set(scenarios.ACTIONS) <= set(load_allowlist(CATALOGUE))


def test_a_simulated_agent_sends_the_catalogue_and_reports_the_argv_it_applied(fake):
    args = type("Args", (), {"interval": 0.05, "post_every": None, "poll_wait": 0.5})()
    args.allowlist = load_allowlist(CATALOGUE)
    agent = simulated_agent(fake.url, KEY, "web-01", "disk_filling", 3, args)
    agent.start_jitter = 0
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: fake.made("GET", "/api/v1/agent/actions"))
        sent = catalogue_order("clean_temp_and_rotate_logs", execution_id=12)
        fake.give(order("clean_temp_and_rotate_logs", list(sent.argv or ()), execution_id=12))
        (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/12/result"))
    finally:
        stop.set()
        thread.join(timeout=5)
    assert fake.made("PUT", "/api/v1/agent/allowlist")[0]["body"]["entries"] == args.allowlist
    assert report["body"]["argv"] == list(sent.argv or ())
    assert report["body"]["argv_digest"] == sent.argv_digest


def run_fleet(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.Popen(
        [sys.executable, "-m", "remediation.simulated_fleet", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_fleet_with_an_unreadable_keys_file_exits_with_one_line(tmp_path):
    process = run_fleet("fleet", "--url", "http://127.0.0.1:9", "--keys", str(tmp_path / "no"))
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 2
    assert len(stderr.strip().splitlines()) == 1
    assert "keys file" in stderr


def test_run_with_an_unknown_scenario_exits_with_one_line():
    process = run_fleet(
        "run", "--url", "http://127.0.0.1:9", "--key", "k", "--host", "h", "--simulate", "fire"
    )
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        "python -m remediation.simulated_fleet: error: unknown scenario 'fire' (one of: "
        + ", ".join(scenarios.SCENARIOS)
        + ")"
    ]


def test_fleet_runs_every_host_and_stops_cleanly_on_sigterm(fake, tmp_path):
    fake.keys = {f"Bearer key-{n}" for n in (1, 2)}
    keys = tmp_path / "fleet-keys.json"
    hosts = [{"name": f"demo-0{n}", "key": f"key-{n}", "scenario": "healthy"} for n in (1, 2)]
    keys.write_text(json.dumps({"hosts": hosts}))
    process = run_fleet("fleet", "--url", fake.url, "--keys", str(keys), "--interval", "0.05")
    try:
        wait_until(lambda: {s["host"] for s in fake.samples()} == {"demo-01", "demo-02"}, 15)
        wait_until(lambda: len(fake.made("PUT", "/api/v1/agent/allowlist")) == 2, 5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert {r["auth"] for r in fake.made("PUT", "/api/v1/agent/allowlist")} == fake.keys
