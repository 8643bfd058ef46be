"""The nft runbooks with the real nft, each test inside fresh network namespaces.

`ip netns add` gives every test an empty ruleset of its own (the host's firewall is never
touched); the runbook runs in it with `ip netns exec`, and the test reads the ruleset there.
Blocking and rate limiting are checked with real TCP connections over a veth pair between
two namespaces. Needs root, nft (Debian's `nftables`) and ip (`iproute2`); when CI=1 a
missing tool fails.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agent.runbook_runs import Run, run_runbook


@dataclass
class Namespace:
    name: str
    root: Path

    def sh(self, argv: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def nft(self, *args: str) -> str:
        done = self.sh(["nft", *args])
        assert done.returncode == 0, done.stderr
        return done.stdout

    def ruleset(self) -> str:
        return self.nft("-s", "list", "ruleset")

    def runbook(self, *args: str, execution_id: str = "5") -> Run:
        return run_runbook(
            *args,
            "--root",
            str(self.root),
            execution_id=execution_id,
            prefix=("ip", "netns", "exec", self.name),
        )


def require_tools() -> None:
    missing = [tool for tool in ("nft", "ip") if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install nftables iproute2)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")


def add_namespace(prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {done.stderr.strip()}")
    return name


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Namespace]:
    require_tools()
    name = add_namespace("wrb")
    try:
        yield Namespace(name, tmp_path)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@dataclass
class Pair:
    """Two namespaces joined by a veth: `server` (10.77.0.1) and `client` (10.77.0.2)."""

    server: Namespace
    client: Namespace

    def connects(self, port: int, *, timeout: float = 0.5) -> bool:
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(('10.77.0.1', {port}), timeout={timeout}).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return self.client.sh([sys.executable, "-c", probe]).returncode == 0


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    require_tools()
    server, client = add_namespace("wrbs"), add_namespace("wrbc")
    listener = None
    try:
        veth = f"wv{uuid.uuid4().hex[:6]}"
        for argv in (
            [
                "ip",
                "link",
                "add",
                veth,
                "netns",
                server,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                client,
            ],
            ["ip", "-n", server, "link", "set", veth, "name", "eth0"],
            ["ip", "-n", server, "addr", "add", "10.77.0.1/24", "dev", "eth0"],
            ["ip", "-n", client, "addr", "add", "10.77.0.2/24", "dev", "eth0"],
            ["ip", "-n", server, "link", "set", "eth0", "up"],
            ["ip", "-n", client, "link", "set", "eth0", "up"],
            ["ip", "-n", server, "link", "set", "lo", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        # A TCP server in the server namespace that accepts every connection.
        accept_all = (
            "import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('10.77.0.1', 8080)); s.listen(128)\n"
            "while True:\n"
            "    s.accept()[0].close()\n"
        )
        listener = subprocess.Popen(
            ["ip", "netns", "exec", server, sys.executable, "-c", accept_all]
        )
        found = Pair(Namespace(server, tmp_path), Namespace(client, tmp_path))
        for _ in range(50):
            if found.connects(8080):
                break
        else:
            pytest.fail("the test server in the namespace never answered")
        yield found
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for name in (server, client):
            subprocess.run(["ip", "netns", "del", name], check=False)


def set_elements(ns: Namespace, name: str) -> list[Any]:
    listed = json.loads(ns.nft("-j", "list", "set", "inet", "warden", name))
    return next(obj["set"] for obj in listed["nftables"] if "set" in obj).get("elem", [])


# ---------------------------------------------------------------- nft-block / nft-unblock


def test_block_drops_traffic_from_the_address_and_unblock_lets_it_back(pair: Pair) -> None:
    server = pair.server
    assert pair.connects(8080)
    assert not pair.connects(8081)  # the probe tells a refused port apart

    block = server.runbook("nft-block", "--address", "10.77.0.2", "--timeout", "1h")

    assert block.exit_code == 0, block.stderr
    assert block.summary["result"] == "done"
    assert "add element inet warden blocked_ipv4 { 10.77.0.2 timeout 1h }" in block.stdout
    elements = set_elements(server, "blocked_ipv4")
    assert elements[0]["elem"]["val"] == "10.77.0.2"
    assert elements[0]["elem"]["timeout"] == 3600
    assert not pair.connects(8080)

    unblock = server.runbook("nft-unblock", "--address", "10.77.0.2")

    assert unblock.exit_code == 0, unblock.stderr
    assert set_elements(server, "blocked_ipv4") == []
    assert pair.connects(8080)


def test_block_and_unblock_are_idempotent_for_ipv4_and_ipv6(netns: Namespace) -> None:
    for address, set_name in (("192.0.2.7", "blocked_ipv4"), ("2001:db8::/64", "blocked_ipv6")):
        first = netns.runbook("nft-block", "--address", address, "--timeout", "1h")
        second = netns.runbook("nft-block", "--address", address, "--timeout", "1h")
        assert first.exit_code == 0, first.stderr
        assert second.summary["result"] == "nothing_to_do"
        assert "already blocked" in second.stdout
        assert len(set_elements(netns, set_name)) == 1

    rules = netns.nft("list", "chain", "inet", "warden", "input")
    assert rules.count("saddr @blocked_ipv4 drop") == 1
    assert rules.count("saddr @blocked_ipv6 drop") == 1
    inside = netns.runbook("nft-block", "--address", "2001:db8::1", "--timeout", "1h")
    assert inside.summary["result"] == "nothing_to_do"
    assert "inside the blocked 2001:db8::/64" in inside.stdout

    for address in ("192.0.2.7", "2001:db8::/64"):
        assert netns.runbook("nft-unblock", "--address", address).exit_code == 0
        absent = netns.runbook("nft-unblock", "--address", address)
        assert absent.exit_code == 0
        assert absent.summary["result"] == "nothing_to_do"
    assert set_elements(netns, "blocked_ipv4") == set_elements(netns, "blocked_ipv6") == []


def test_unblock_without_any_warden_table_is_not_an_error(netns: Namespace) -> None:
    run = netns.runbook("nft-unblock", "--address", "192.0.2.7")

    assert run.exit_code == 0
    assert run.summary["result"] == "nothing_to_do"
    assert netns.ruleset().strip() == ""


def test_blocking_too_wide_or_loopback_is_refused(netns: Namespace) -> None:
    for address in ("0.0.0.0/0", "10.0.0.0/8", "127.0.0.1", "::1"):
        run = netns.runbook("nft-block", "--address", address, "--timeout", "1h")
        assert run.exit_code == 3, (address, run.stdout)
        assert run.stderr.startswith(f"refused: refusing to block {address}")
    assert netns.ruleset().strip() == ""


def test_block_dry_run_changes_nothing(netns: Namespace) -> None:
    run = netns.runbook("nft-block", "--address", "192.0.2.7", "--timeout", "1h", "--dry-run")

    assert run.exit_code == 0, run.stderr
    assert "would run: nft -f -" in run.stdout
    assert "nft> add table inet warden" in run.stdout
    assert netns.ruleset().strip() == ""


# ---------------------------------------------------------------- rate limits


def test_rate_limit_drops_new_connections_over_the_rate(pair: Pair) -> None:
    run = pair.server.runbook("nft-rate-limit", "--port", "8080", "--rate", "1/minute")

    assert run.exit_code == 0, run.stderr
    results = [pair.connects(8080, timeout=0.3) for _ in range(12)]
    assert results[0]  # within the burst
    assert not all(results)  # then dropped

    removed = pair.server.runbook("nft-remove-rate-limit", "--port", "8080")
    assert removed.exit_code == 0, removed.stderr
    assert all(pair.connects(8080) for _ in range(10))


def test_rate_limit_is_found_by_its_comment_changed_in_place_and_removed(
    netns: Namespace,
) -> None:
    first = netns.runbook("nft-rate-limit", "--port", "8080", "--rate", "100/second")
    again = netns.runbook("nft-rate-limit", "--port", "8080", "--rate", "100/second")
    other = netns.runbook("nft-rate-limit", "--port", "9090", "--rate", "5/second")
    changed = netns.runbook("nft-rate-limit", "--port", "8080", "--rate", "50/second")

    assert first.exit_code == other.exit_code == changed.exit_code == 0
    assert again.summary["result"] == "nothing_to_do"
    assert "replace rule inet warden input handle" in changed.stdout
    chain = netns.nft("list", "chain", "inet", "warden", "input")
    assert chain.count('comment "warden: rate limit tcp port 8080"') == 1
    assert "tcp dport 8080 ct state new limit rate over 50/second" in chain
    assert "tcp dport 9090 ct state new limit rate over 5/second" in chain

    removed = netns.runbook("nft-remove-rate-limit", "--port", "8080")
    absent = netns.runbook("nft-remove-rate-limit", "--port", "8080")

    assert removed.exit_code == 0, removed.stderr
    assert absent.summary["result"] == "nothing_to_do"
    chain = netns.nft("list", "chain", "inet", "warden", "input")
    assert "dport 8080" not in chain
    assert "tcp dport 9090" in chain


# ---------------------------------------------------------------- nft-apply / nft-revert

BEFORE = """
table ip existing {
    set admins { type ipv4_addr; elements = { 192.0.2.10 } }
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr @admins tcp dport 22 accept
        counter
    }
}
"""

CHANGE = """table inet app {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 9999 drop
    }
}
"""


def write_change(ns: Namespace, content: str) -> Path:
    path = ns.root / "etc/warden/requested-change.nft"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_apply_records_the_change_and_revert_restores_the_ruleset_exactly(
    netns: Namespace,
) -> None:
    netns.sh(["nft", "-f", "-"], stdin=BEFORE)
    original = netns.ruleset()
    write_change(netns, CHANGE)
    args = ("nft-apply", "--file", "/etc/warden/requested-change.nft")

    apply = netns.runbook(*args)

    assert apply.exit_code == 0, apply.stderr
    digest = hashlib.sha256(CHANGE.encode()).hexdigest()
    assert apply.summary["file_sha256"] == digest
    assert f"sha256 {digest}" in apply.stdout
    for line in CHANGE.splitlines():  # what was applied is on record
        assert f"  | {line}" in apply.stdout
    now = netns.ruleset()
    assert "table inet app" in now and "table ip existing" in now
    assert netns.runbook(*args).summary["result"] == "nothing_to_do"

    revert = netns.runbook("nft-revert")

    assert revert.exit_code == 0, revert.stderr
    assert netns.ruleset() == original
    again = netns.runbook("nft-revert")
    assert again.exit_code == 0
    assert again.summary["result"] == "nothing_to_do"
    assert not (netns.root / "var/lib/warden-agent/state/nft/snapshot.nft").exists()


def test_apply_of_a_file_nft_rejects_is_refused_and_changes_nothing(netns: Namespace) -> None:
    netns.sh(["nft", "-f", "-"], stdin=BEFORE)
    original = netns.ruleset()
    write_change(netns, "table inet app { chain input { tcp dport 99999 drop } }\n")

    run = netns.runbook("nft-apply", "--file", "/etc/warden/requested-change.nft")

    assert run.exit_code == 3
    assert "nft does not accept /etc/warden/requested-change.nft" in run.stderr
    assert netns.ruleset() == original
    assert not (netns.root / "var/lib/warden-agent/state/nft").exists()


def test_apply_dry_run_shows_the_change_and_applies_nothing(netns: Namespace) -> None:
    write_change(netns, CHANGE)

    run = netns.runbook("nft-apply", "--file", "/etc/warden/requested-change.nft", "--dry-run")

    assert run.exit_code == 0, run.stderr
    assert "would run: nft -f " in run.stdout
    assert "tcp dport 9999 drop" in run.stdout
    assert netns.ruleset().strip() == ""
    assert not (netns.root / "var/lib/warden-agent/state/nft").exists()


def test_revert_restores_the_blocks_of_the_time_of_the_change_too(netns: Namespace) -> None:
    """The snapshot is the whole ruleset, Warden's own table included (see RUNBOOKS.md)."""
    write_change(netns, CHANGE)
    assert netns.runbook("nft-apply", "--file", "/etc/warden/requested-change.nft").exit_code == 0
    assert netns.runbook("nft-block", "--address", "192.0.2.7", "--timeout", "1h").exit_code == 0

    assert netns.runbook("nft-revert").exit_code == 0

    assert netns.ruleset().strip() == ""


def test_a_later_change_keeps_the_earlier_one_and_only_its_own_rollback_reverts(
    netns: Namespace,
) -> None:
    write_change(netns, CHANGE)
    assert netns.runbook("nft-apply", "--file", "/etc/warden/requested-change.nft").exit_code == 0
    after_first = netns.ruleset()
    write_change(netns, CHANGE.replace("inet app", "inet app2"))
    second = netns.runbook(
        "nft-apply", "--file", "/etc/warden/requested-change.nft", execution_id="6"
    )
    assert second.exit_code == 0, second.stderr
    assert "the earlier change /etc/warden/requested-change.nft" in second.stdout

    first_rollback = netns.runbook("nft-revert", execution_id="5")
    assert first_rollback.exit_code == 3
    assert "applied by execution 6, not 5" in first_rollback.stderr

    second_rollback = netns.runbook("nft-revert", execution_id="6")
    assert second_rollback.exit_code == 0, second_rollback.stderr
    assert netns.ruleset() == after_first
