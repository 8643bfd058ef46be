"""restart-unit, cpu-throttle/unthrottle, dns-flush/switch/revert through stand-ins.

This machine runs no systemd and no systemd-resolved, so `systemctl` and `resolvectl` here
are small Python stand-ins placed first on PATH. They keep unit and link state in a JSON
file and answer the commands the runbooks use in systemd's own output format; `restart`
really starts the unit's process (a real HTTP server), `resolvectl query` really resolves.
The health checks talk to real TCP/HTTP servers. None of this ran against a real systemd.
"""

import contextlib
import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agent.runbook_runs import Run, run_runbook

STANDIN = textwrap.dedent(
    '''
    """Stand-in for systemctl and resolvectl (the name it is called by decides)."""
    import json, os, signal, socket, subprocess, sys, time, uuid

    STATE = os.environ["STANDIN_STATE"]

    def load():
        with open(STATE) as handle:
            return json.load(handle)

    def save(state):
        with open(STATE + ".tmp", "w") as handle:
            json.dump(state, handle)
        os.replace(STATE + ".tmp", STATE)

    def timespan(usec):
        # systemd's format_timespan: "500ms", "1s 500ms", "2s"
        parts = []
        for unit, size in (("s", 1_000_000), ("ms", 1_000), ("us", 1)):
            if usec >= size:
                parts.append(f"{usec // size}{unit}")
                usec %= size
        return " ".join(parts) or "0"

    def active_state(unit):
        crash_at = unit.get("crash_at")
        if crash_at is not None and time.time() >= crash_at:
            return "failed", "failed"
        return unit["ActiveState"], unit.get("SubState", "running")

    def systemctl(state, args):
        command, rest = args[0], args[1:]
        if command == "show":
            name = rest[0]
            props = [a.split("=", 1)[1] for a in rest if a.startswith("--property=")]
            wanted = ",".join(props).split(",") if props else None
            unit = state["units"].get(name)
            if unit is None:
                shown = {"LoadState": "not-found", "ActiveState": "inactive",
                         "SubState": "dead", "InvocationID": "",
                         "CPUQuotaPerSecUSec": "infinity"}
            else:
                active, sub = active_state(unit)
                shown = {"LoadState": "loaded", "ActiveState": active, "SubState": sub,
                         "InvocationID": unit.get("InvocationID", ""),
                         "CPUQuotaPerSecUSec": unit.get("CPUQuotaPerSecUSec", "infinity")}
            for key, value in shown.items():
                if wanted is None or key in wanted:
                    print(f"{key}={value}")
            return 0
        if command == "restart":
            name = rest[0]
            unit = state["units"].get(name)
            if unit is None:
                print(f"Failed to restart {name}: Unit {name} not found.", file=sys.stderr)
                return 5
            if unit.get("pid"):
                try:
                    os.killpg(unit["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
            if unit.get("exec"):
                process = subprocess.Popen(unit["exec"], start_new_session=True,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                unit["pid"] = process.pid
            unit["InvocationID"] = uuid.uuid4().hex
            unit["ActiveState"] = unit.get("on_restart", "active")
            unit["SubState"] = "running" if unit["ActiveState"] == "active" else "dead"
            crash = unit.get("crash_after")
            unit["crash_at"] = time.time() + crash if crash is not None else None
            if unit["ActiveState"] == "failed":
                print(f"Job for {name} failed.", file=sys.stderr)
                return 1
            return 0
        if command == "set-property":
            rest = [a for a in rest if a != "--runtime"]
            name, settings = rest[0], rest[1:]
            unit = state["units"].get(name)
            if unit is None:
                print(f"Failed to set unit properties on {name}: Unit {name} not found.",
                      file=sys.stderr)
                return 5
            for setting in settings:
                key, _, value = setting.partition("=")
                if key != "CPUQuota":
                    print(f"Unknown assignment: {setting}", file=sys.stderr)
                    return 1
                if unit.get("ignores_properties"):
                    continue
                if value == "":
                    unit["CPUQuotaPerSecUSec"] = "infinity"
                elif value.endswith("%"):
                    unit["CPUQuotaPerSecUSec"] = timespan(round(float(value[:-1]) * 10_000))
                else:
                    print(f"Failed to parse CPUQuota= value: {value}", file=sys.stderr)
                    return 1
            return 0
        print(f"stand-in systemctl does not do: {args}", file=sys.stderr)
        return 1

    def resolvectl(state, args):
        resolved = state["units"].get("systemd-resolved.service", {})
        running = active_state(resolved)[0] == "active" if resolved else False
        command, rest = args[0], args[1:]
        if command == "flush-caches":
            if not running:
                print("Failed to flush caches: Connection refused", file=sys.stderr)
                return 1
            state["flushes"] = state.get("flushes", 0) + 1
            return 0
        if command == "dns":
            link = state["links"].get(rest[0])
            if link is None:
                print(f'Failed to resolve interface "{rest[0]}": No such device',
                      file=sys.stderr)
                return 1
            if len(rest) == 1:
                print(f"Link {link['index']} ({rest[0]}): {' '.join(link['dns'])}".rstrip())
                return 0
            link["dns"] = [server for server in rest[1:] if server]
            return 0
        if command == "query":
            if not running:
                print(f"{rest[0]}: resolve call failed: Connection refused", file=sys.stderr)
                return 1
            try:
                found = socket.getaddrinfo(rest[0], None)
            except OSError as error:
                print(f"{rest[0]}: resolve call failed: {error}", file=sys.stderr)
                return 1
            print(f"{rest[0]}: {found[0][4][0]}")
            return 0
        print(f"stand-in resolvectl does not do: {args}", file=sys.stderr)
        return 1

    state = load()
    tool = os.path.basename(sys.argv[0])
    state.setdefault("calls", []).append([tool, *sys.argv[1:]])
    code = (systemctl if tool == "systemctl" else resolvectl)(state, sys.argv[1:])
    save(state)
    sys.exit(code)
    '''
)


@dataclass
class Systemd:
    """The stand-ins' world: units, links, and every call the runbooks made."""

    root: Path
    bin_dir: Path
    state_path: Path

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    def set_state(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state))

    def add_unit(self, name: str, **unit: Any) -> None:
        state = self.state()
        unit.setdefault("ActiveState", "active")
        unit.setdefault("SubState", "running")
        unit.setdefault("InvocationID", "first")
        state["units"][name] = unit
        self.set_state(state)

    def unit(self, name: str) -> dict[str, Any]:
        return self.state()["units"][name]

    def calls(self, *prefix: str) -> list[list[str]]:
        return [call for call in self.state()["calls"] if call[: len(prefix)] == list(prefix)]

    def run(self, *args: str, execution_id: str | None = None) -> Run:
        standins = {
            "STANDIN_STATE": str(self.state_path),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        return run_runbook(*args, "--root", str(self.root), execution_id=execution_id, env=standins)


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("systemctl", "resolvectl"):
        path = bin_dir / tool
        path.write_text(f"#!{sys.executable}\n{STANDIN}")
        path.chmod(0o755)
    world = Systemd(tmp_path / "root", bin_dir, tmp_path / "standin.json")
    world.root.mkdir()
    world.set_state({"units": {}, "links": {}, "calls": []})
    yield world
    for unit in world.state()["units"].values():
        if unit.get("pid"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(unit["pid"], signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def web_server_unit(port: int) -> dict[str, Any]:
    """A unit whose restart starts a real HTTP server (slow to come up, like a real one)."""
    server = (
        "import time, http.server; time.sleep(0.7); "
        f"http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port={port}, "
        "bind='127.0.0.1')"
    )
    return {"exec": [sys.executable, "-c", server]}


# ---------------------------------------------------------------- restart-unit


def test_restart_succeeds_once_the_unit_is_active_and_answers_http(systemd: Systemd) -> None:
    port = free_port()
    systemd.add_unit("nginx.service", **web_server_unit(port))

    run = systemd.run(
        "restart-unit",
        "--unit",
        "nginx.service",
        "--check-http",
        f"http://127.0.0.1:{port}/",
        "--timeout",
        "30",
    )

    assert run.exit_code == 0, run.stderr
    assert run.summary["result"] == "done"
    assert systemd.calls("systemctl", "restart") == [["systemctl", "restart", "nginx.service"]]
    assert f"passed: active; http http://127.0.0.1:{port}/" in run.stdout
    # The server the restart started really answers.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_restart_fails_when_a_health_check_never_passes(systemd: Systemd) -> None:
    systemd.add_unit("app.service")
    port = free_port()  # nothing listens there

    started = time.monotonic()
    run = systemd.run(
        "restart-unit",
        "--unit",
        "app.service",
        "--check-tcp",
        f"127.0.0.1:{port}",
        "--timeout",
        "2",
    )

    assert run.exit_code == 1
    assert run.summary["result"] == "failed"
    assert f"tcp 127.0.0.1:{port}" in run.stderr
    assert 2 <= time.monotonic() - started < 20


def test_check_active_catches_a_unit_that_dies_right_after_starting(systemd: Systemd) -> None:
    systemd.add_unit("app.service", crash_after=0.5)

    run = systemd.run("restart-unit", "--unit", "app.service", "--check-active", "--timeout", "10")

    assert run.exit_code == 1
    assert "app.service failed" in run.stderr


def test_check_active_passes_for_a_unit_that_restarted_and_stays_up(systemd: Systemd) -> None:
    systemd.add_unit("app.service")

    run = systemd.run(
        "restart-unit",
        "--unit",
        "app.service",
        "--check-active",
        "--timeout",
        "30",
        "--settle-seconds",
        "1",
    )

    assert run.exit_code == 0, run.stderr
    assert systemd.unit("app.service")["InvocationID"] != "first"
    assert "really restarted and still active after 1 s" in run.stdout


def test_restart_of_an_unknown_unit_is_refused_without_restarting(systemd: Systemd) -> None:
    run = systemd.run("restart-unit", "--unit", "ghost.service", "--timeout", "30")

    assert run.exit_code == 3
    assert run.stderr.strip() == "refused: unit ghost.service is not loaded (LoadState=not-found)"
    assert systemd.calls("systemctl", "restart") == []


def test_restart_dry_run_restarts_nothing(systemd: Systemd) -> None:
    systemd.add_unit("app.service")

    run = systemd.run("restart-unit", "--unit", "app.service", "--dry-run", "--check-active")

    assert run.exit_code == 0, run.stderr
    assert "would run: systemctl restart app.service" in run.stdout
    assert systemd.calls("systemctl", "restart") == []
    assert systemd.unit("app.service")["InvocationID"] == "first"


def test_the_same_execution_restarts_once(systemd: Systemd) -> None:
    systemd.add_unit("app.service")
    args = ("restart-unit", "--unit", "app.service", "--timeout", "30")

    first = systemd.run(*args, execution_id="11")
    second = systemd.run(*args, execution_id="11")

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert second.summary["result"] == "nothing_to_do"
    assert len(systemd.calls("systemctl", "restart")) == 1


# ---------------------------------------------------------------- cpu-throttle / unthrottle


def test_throttle_records_the_old_quota_once_and_unthrottle_puts_it_back(
    systemd: Systemd,
) -> None:
    systemd.add_unit("app.service", CPUQuotaPerSecUSec="1s 500ms")  # CPUQuota=150%
    state_file = systemd.root / "var/lib/warden-agent/state/cpu-throttle/app.service.json"

    throttle = systemd.run("cpu-throttle", "--unit", "app.service", "--quota", "50%")
    assert throttle.exit_code == 0, throttle.stderr
    assert systemd.unit("app.service")["CPUQuotaPerSecUSec"] == "500ms"
    assert json.loads(state_file.read_text())["previous"] == "1s 500ms"
    assert systemd.calls("systemctl", "set-property") == [
        ["systemctl", "set-property", "--runtime", "app.service", "CPUQuota=50%"]
    ]

    again = systemd.run("cpu-throttle", "--unit", "app.service", "--quota", "50%")
    assert again.summary["result"] == "nothing_to_do"
    tighter = systemd.run("cpu-throttle", "--unit", "app.service", "--quota", "20%")
    assert tighter.exit_code == 0
    assert json.loads(state_file.read_text())["previous"] == "1s 500ms"  # still the original

    unthrottle = systemd.run("cpu-unthrottle", "--unit", "app.service")
    assert unthrottle.exit_code == 0, unthrottle.stderr
    assert systemd.calls("systemctl", "set-property")[-1][-1] == "CPUQuota=150%"
    assert systemd.unit("app.service")["CPUQuotaPerSecUSec"] == "1s 500ms"
    assert not state_file.exists()
    assert systemd.run("cpu-unthrottle", "--unit", "app.service").summary["result"] == (
        "nothing_to_do"
    )


def test_unthrottle_clears_the_quota_when_there_was_none(systemd: Systemd) -> None:
    systemd.add_unit("app.service")

    assert systemd.run("cpu-throttle", "--unit", "app.service", "--quota", "50%").exit_code == 0
    unthrottle = systemd.run("cpu-unthrottle", "--unit", "app.service")

    assert unthrottle.exit_code == 0, unthrottle.stderr
    assert systemd.calls("systemctl", "set-property")[-1] == [
        "systemctl",
        "set-property",
        "--runtime",
        "app.service",
        "CPUQuota=",
    ]
    assert systemd.unit("app.service")["CPUQuotaPerSecUSec"] == "infinity"


def test_throttle_post_check_fails_when_the_quota_does_not_take(systemd: Systemd) -> None:
    systemd.add_unit("app.service", ignores_properties=True)

    run = systemd.run("cpu-throttle", "--unit", "app.service", "--quota", "50%")

    assert run.exit_code == 1
    assert "reports CPUQuotaPerSecUSec=infinity, not 50%" in run.stderr


def test_throttle_dry_run_and_unknown_unit(systemd: Systemd) -> None:
    systemd.add_unit("app.service")

    dry = systemd.run("cpu-throttle", "--unit", "app.service", "--quota", "50%", "--dry-run")
    unknown = systemd.run("cpu-throttle", "--unit", "ghost.service", "--quota", "50%")

    assert dry.exit_code == 0
    assert "would run: systemctl set-property --runtime app.service CPUQuota=50%" in dry.stdout
    assert unknown.exit_code == 3
    assert systemd.calls("systemctl", "set-property") == []
    assert not (systemd.root / "var").exists()


# ---------------------------------------------------------------- dns


def test_dns_flush_flushes_restarts_and_checks_the_name_resolves(systemd: Systemd) -> None:
    systemd.add_unit("systemd-resolved.service")

    run = systemd.run(
        "dns-flush", "--resolver-unit", "systemd-resolved.service", "--check-name", "localhost"
    )

    assert run.exit_code == 0, run.stderr
    assert systemd.state()["flushes"] == 1
    assert systemd.calls("systemctl", "restart") == [
        ["systemctl", "restart", "systemd-resolved.service"]
    ]
    assert "ok: localhost resolves" in run.stdout


def test_dns_flush_fails_when_the_resolver_does_not_come_back(systemd: Systemd) -> None:
    systemd.add_unit("systemd-resolved.service", on_restart="activating")

    run = systemd.run("dns-flush", "--check-name", "localhost", "--timeout", "2")

    assert run.exit_code == 1
    assert "systemd-resolved.service is activating" in run.stderr


def test_dns_switch_then_revert_restores_the_servers(systemd: Systemd) -> None:
    state = systemd.state()
    state["links"]["eth0"] = {"index": 2, "dns": ["192.0.2.1", "192.0.2.2"]}
    systemd.set_state(state)
    systemd.add_unit("systemd-resolved.service")

    dry = systemd.run("dns-switch", "--interface", "eth0", "--server", "10.0.0.53", "--dry-run")
    assert dry.exit_code == 0
    assert systemd.state()["links"]["eth0"]["dns"] == ["192.0.2.1", "192.0.2.2"]

    switch = systemd.run("dns-switch", "--interface", "eth0", "--server", "10.0.0.53")
    assert switch.exit_code == 0, switch.stderr
    assert systemd.state()["links"]["eth0"]["dns"] == ["10.0.0.53"]
    assert (
        systemd.run("dns-switch", "--interface", "eth0", "--server", "10.0.0.53").summary["result"]
        == "nothing_to_do"
    )

    revert = systemd.run("dns-revert", "--interface", "eth0")
    assert revert.exit_code == 0, revert.stderr
    assert systemd.state()["links"]["eth0"]["dns"] == ["192.0.2.1", "192.0.2.2"]
    assert systemd.run("dns-revert", "--interface", "eth0").summary["result"] == "nothing_to_do"


def test_dns_revert_clears_a_link_that_had_no_servers(systemd: Systemd) -> None:
    state = systemd.state()
    state["links"]["eth0"] = {"index": 2, "dns": []}
    systemd.set_state(state)

    assert systemd.run("dns-switch", "--interface", "eth0", "--server", "10.0.0.53").exit_code == 0
    revert = systemd.run("dns-revert", "--interface", "eth0")

    assert revert.exit_code == 0, revert.stderr
    assert ["resolvectl", "dns", "eth0", ""] in systemd.calls("resolvectl", "dns")
    assert systemd.state()["links"]["eth0"]["dns"] == []


def test_dns_switch_on_an_unknown_interface_is_refused(systemd: Systemd) -> None:
    run = systemd.run("dns-switch", "--interface", "eth9", "--server", "10.0.0.53")

    assert run.exit_code == 3
    assert "resolvectl has no link eth9" in run.stderr
    assert not (systemd.root / "var").exists()
