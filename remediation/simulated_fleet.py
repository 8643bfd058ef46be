"""Simulated hosts running the real agent (warden_agent.Agent), for the demo, benches and tests.

Each simulated host's readings come from scoring.scenarios, and its actions go through
the agent's own checks against the catalogue's allow-list (agent/examples/allowlist.json):
an order runs only if its action is allow-listed, its digest is its argv's, and its argv
matches the template. Instead of running the argv, the simulated executor applies the
action to the simulated host, and reports the argv as the one it ran.

It needs no Django: numpy (scoring.scenarios) and the agent package.

    python -m remediation.simulated_fleet run --url URL --key KEY --host demo-01 \\
        --simulate disk_filling --seed 3
    python -m remediation.simulated_fleet fleet --url URL --keys data/fleet-keys.json

The fleet's keys file is {"hosts": [{"name": ..., "key": ..., "scenario": ...}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from scoring.scenarios import ACTIONS, SCENARIOS, SimulatedHost
from warden_agent.agent import POLL_WAIT, Agent, run_until_signalled
from warden_agent.client import check_url
from warden_agent.executor import KEY_ENV, AllowList, Executor, Order, Outcome, load_allowlist
from warden_agent.metrics import Sample, make_sample

log = logging.getLogger("warden.agent")

# The catalogue's allow-list, as the agent package ships it.
CATALOGUE = Path(__file__).resolve().parents[1] / "agent" / "examples" / "allowlist.json"


class UsageError(Exception):
    """A bad argument or file: reported as one line on stderr."""


def catalogue_allowlist() -> AllowList:
    """The runbook catalogue's allow-list; UsageError if the file is missing or invalid."""
    try:
        return load_allowlist(CATALOGUE)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


class SimulatedMetrics:
    """Readings from a simulated host (scoring.scenarios)."""

    def __init__(self, host: SimulatedHost) -> None:
        self.host = host

    def read(self) -> Sample:
        reading = self.host.next_reading()
        # Stamped with the wall clock, not the simulator's: after a stall or an outage the
        # simulator's clock falls behind, and Warden compares samples with its own times
        # (e.g. to verify a fix with metrics taken after it).
        return make_sample(
            reading.host,
            datetime.now(UTC),
            reading.disk_usage,
            reading.memory_usage,
            reading.cpu_usage,
            reading.dns_latency_ms,
            reading.firewall_change_requested,
        )


class SimulatedExecutor(Executor):
    """After the agent's checks, applies the action to the simulated host."""

    def __init__(self, host: SimulatedHost, allowlist: AllowList | None = None) -> None:
        super().__init__(catalogue_allowlist() if allowlist is None else allowlist)
        self.host = host

    def run(self, order: Order) -> Outcome:
        argv = list(order.argv or ())
        if order.action not in ACTIONS:
            # Allow-listed but outside the simulation (e.g. block_address): nothing to change.
            return Outcome(True, f"{order.action}: not modelled by the simulator", argv, 0)
        return Outcome(True, self.host.apply_action(order.action), argv, 0)


def simulated_agent(
    url: str, key: str, name: str, scenario: str, seed: int, args: argparse.Namespace
) -> Agent:
    """An Agent for one simulated host, memory only: its readings and actions share the host."""
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r} (one of: {', '.join(SCENARIOS)})")
    host = SimulatedHost(name, scenario, seed, datetime.now(UTC), interval_seconds=args.interval)
    return Agent(
        url,
        key,
        name,
        SimulatedMetrics(host),
        SimulatedExecutor(host, args.allowlist),
        interval=args.interval,
        post_every=args.post_every,
        poll_wait=args.poll_wait,
    )


def load_fleet(path: str) -> list[dict[str, str]]:
    """The hosts of a fleet keys file; raises UsageError saying what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read keys file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"keys file {path} is not valid JSON: {exc}") from exc
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, list) or not hosts:
        raise UsageError(f'keys file {path} must be {{"hosts": [{{"name", "key", "scenario"}}]}}')
    fleet = []
    for index, item in enumerate(hosts):
        if not (isinstance(item, dict) and item.get("name") and item.get("key")):
            raise UsageError(f"keys file {path}: hosts[{index}] needs a name and a key")
        fleet.append(
            {
                "name": str(item["name"]),
                "key": str(item["key"]),
                "scenario": str(item.get("scenario") or "healthy"),
            }
        )
    names = [host["name"] for host in fleet]
    if len(set(names)) != len(names):
        raise UsageError(f"keys file {path}: a host name appears twice")
    return fleet


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One readable line instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--url", required=True, help="Warden's base URL, e.g. http://127.0.0.1:8000"
    )
    common.add_argument("--interval", type=positive, default=5.0, help="seconds between readings")
    common.add_argument(
        "--post-every",
        type=positive,
        help="seconds between posts of the readings taken (default: --interval, each at once)",
    )
    common.add_argument(
        "--poll-wait",
        type=positive,
        default=POLL_WAIT,
        help=f"seconds one long poll for actions waits (default {POLL_WAIT:g})",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every sample posted")

    parser = Parser(
        prog="python -m remediation.simulated_fleet", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,fleet}")

    run = commands.add_parser("run", parents=[common], help="run the agent of one simulated host")
    run.add_argument("--key", help=f"the host's API key (default: ${KEY_ENV})")
    run.add_argument("--host", required=True, help="the host's name in Warden")
    run.add_argument(
        "--simulate", required=True, metavar="SCENARIO", help="the scenario the host lives"
    )
    run.add_argument("--seed", type=int, default=0, help="the simulation's random seed")

    fleet = commands.add_parser("fleet", parents=[common], help="run simulated agents for a fleet")
    fleet.add_argument("--keys", required=True, metavar="FILE", help="fleet keys JSON file")
    fleet.add_argument("--seed", type=int, default=0, help="first host's seed; the next get +1")
    return parser


def agents_from(args: argparse.Namespace) -> list[Agent]:
    try:
        url = check_url(args.url)
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from exc
    args.allowlist = catalogue_allowlist()  # read once for the whole fleet
    if args.command == "fleet":
        return [
            simulated_agent(url, host["key"], host["name"], host["scenario"], args.seed + i, args)
            for i, host in enumerate(load_fleet(args.keys))
        ]
    key = args.key or os.environ.get(KEY_ENV)
    if not key:
        raise UsageError(f"no API key: pass --key or set {KEY_ENV}")
    return [simulated_agent(url, key, args.host, args.simulate, args.seed, args)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        agents = agents_from(args)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    log.info("simulated fleet: %d host(s) reporting to %s", len(agents), agents[0].url)
    return run_until_signalled(agents)


if __name__ == "__main__":
    sys.exit(main())
