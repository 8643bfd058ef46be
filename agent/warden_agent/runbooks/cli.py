"""warden-runbook: the runbooks the agent runs, one subcommand each.

Exit codes: 0 done (or nothing to do), 1 the action or its post-check failed, 2 usage
(one line on stderr), 3 a pre-check refused and nothing was changed. The last line on
stdout is a JSON summary. RUNBOOKS.md describes every runbook.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import dns, logs, memory, units
from .common import (
    DEFAULT_QUARANTINE,
    DEFAULT_STATE_DIR,
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_USAGE,
    FAILED,
    UNIT,
    WORD,
    Context,
    Output,
    Stop,
    UsageError,
    absolute_path,
)
from .disk.purge import disk_purge
from .disk.quarantine import disk_quarantine
from .disk.restore import disk_restore
from .disk.space import usage_percent
from .firewall import blocks, rate_limits, ruleset

PROG = "warden-runbook"
Runbook = Callable[[argparse.Namespace, Context], str]


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


def _typed(convert: Callable[[str], object], name: str) -> Callable[[str], object]:
    """An argparse type whose error message is the converter's own sentence."""

    def parse(text: str) -> object:
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse.__name__ = name
    return parse


def unit_name(text: str) -> str:
    if not UNIT.match(text):
        raise ValueError(f"{text!r} is not a systemd unit name (like app.service)")
    return text


def word(text: str) -> str:
    if not WORD.match(text):
        raise ValueError(f"{text!r} must be letters, digits, '.', '_' or '-'")
    return text


PATH = _typed(absolute_path, "path")
UNIT_NAME = _typed(unit_name, "unit")


Command = Callable[[str, Runbook, str], OneLineParser]


def build_parser() -> OneLineParser:
    common = OneLineParser(add_help=False, allow_abbrev=False)
    common.add_argument("--root", type=PATH, default="/", help="prefix for every path (tests)")
    common.add_argument("--state-dir", type=PATH, default=DEFAULT_STATE_DIR)
    common.add_argument("--dry-run", action="store_true", help="print what would be done")

    parser = OneLineParser(prog=PROG, description=__doc__, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", metavar="RUNBOOK", required=True)

    def command(name: str, runbook: Runbook, summary: str) -> OneLineParser:
        sub = commands.add_parser(
            name, parents=[common], help=summary, description=summary, allow_abbrev=False
        )
        sub.set_defaults(runbook=runbook)
        return sub

    # The order here is the order `warden-runbook --help` lists them in.
    _add_disk_commands(command)
    _add_service_commands(command)
    _add_dns_commands(command)
    _add_firewall_commands(command)
    return parser


def _add_disk_commands(command: Command) -> None:
    sub = command(
        "disk-quarantine",
        disk_quarantine,
        "move old temp files and rotated logs into a quarantine batch",
    )
    sub.add_argument("--temp-dir", type=PATH, action="append")
    sub.add_argument("--log-dir", type=PATH, action="append")
    sub.add_argument("--older-than-days", type=int, default=7)
    sub.add_argument("--quarantine", type=PATH, default=DEFAULT_QUARANTINE)
    sub.add_argument("--batch", type=_typed(word, "batch"), help="default: $WARDEN_EXECUTION_ID")
    sub.add_argument(
        "--target-usage-percent",
        type=_typed(usage_percent, "percent"),
        help="post-check: every cleaned filesystem at most this full afterwards",
    )

    sub = command("disk-restore", disk_restore, "put every file of a batch back exactly")
    sub.add_argument("--quarantine", type=PATH, default=DEFAULT_QUARANTINE)
    sub.add_argument("--batch", type=_typed(word, "batch"), help="default: $WARDEN_EXECUTION_ID")

    sub = command("disk-purge", disk_purge, "delete quarantine batches past the retention")
    sub.add_argument("--quarantine", type=PATH, default=DEFAULT_QUARANTINE)
    sub.add_argument("--retention-days", type=int, default=14)


def _add_service_commands(command: Command) -> None:
    """Logs, units, memory and CPU."""
    sub = command("rotate-logs", logs.rotate_logs, "force logrotate on one configuration")
    sub.add_argument("--config", type=PATH, required=True)
    sub.add_argument("--state-file", type=PATH, help="default: STATE_DIR/logrotate.status")

    sub = command("restart-unit", units.restart_unit, "restart a unit and check its health")
    sub.add_argument("--unit", type=UNIT_NAME, required=True)
    sub.add_argument("--check-active", action="store_true")
    sub.add_argument(
        "--check-tcp", type=_typed(units.parse_host_port, "host:port"), action="append"
    )
    sub.add_argument("--check-http", type=_typed(units.http_url, "url"), action="append")
    sub.add_argument("--timeout", type=float, default=30.0)
    sub.add_argument("--settle-seconds", type=float, default=2.0)

    command("drop-caches", memory.drop_caches, "sync, then drop the kernel's clean caches")

    sub = command("cpu-throttle", units.cpu_throttle, "cap a unit's CPU (runtime CPUQuota)")
    sub.add_argument("--unit", type=UNIT_NAME, required=True)
    sub.add_argument("--quota", required=True)
    sub = command("cpu-unthrottle", units.cpu_unthrottle, "put back the CPU quota from before")
    sub.add_argument("--unit", type=UNIT_NAME, required=True)


def _add_dns_commands(command: Command) -> None:
    sub = command("dns-flush", dns.dns_flush, "flush and restart the resolver, check it answers")
    sub.add_argument("--resolver-unit", type=UNIT_NAME, default="systemd-resolved.service")
    sub.add_argument("--check-name", type=_typed(dns.host_name, "name"), default="localhost")
    sub.add_argument("--timeout", type=float, default=10.0)
    sub = command("dns-switch", dns.dns_switch, "set a link's DNS server (revert: dns-revert)")
    sub.add_argument("--interface", type=_typed(dns.interface_name, "interface"), required=True)
    sub.add_argument("--server", type=_typed(dns.server_address, "address"), required=True)
    sub = command("dns-revert", dns.dns_revert, "put back the link's DNS servers from before")
    sub.add_argument("--interface", type=_typed(dns.interface_name, "interface"), required=True)


def _add_firewall_commands(command: Command) -> None:
    sub = command("nft-apply", ruleset.nft_apply, "apply a reviewed nft file (revert: nft-revert)")
    sub.add_argument("--file", type=PATH, required=True)
    command("nft-revert", ruleset.nft_revert, "restore the ruleset saved by nft-apply")

    address = _typed(blocks.ip_target, "address")
    sub = command("nft-block", blocks.nft_block, "drop traffic from an address for a while")
    sub.add_argument("--address", type=address, required=True)
    sub.add_argument("--timeout", type=_typed(blocks.nft_timeout, "timeout"), default="1h")
    sub = command("nft-unblock", blocks.nft_unblock, "remove an address from the block sets")
    sub.add_argument("--address", type=address, required=True)

    port = _typed(rate_limits.tcp_port, "port")
    sub = command(
        "nft-rate-limit", rate_limits.nft_rate_limit, "limit new TCP connections to a port"
    )
    sub.add_argument("--port", type=port, required=True)
    sub.add_argument("--rate", type=_typed(rate_limits.nft_rate, "rate"), default="100/second")
    sub = command(
        "nft-remove-rate-limit", rate_limits.nft_remove_rate_limit, "remove a port's rate limit"
    )
    sub.add_argument("--port", type=port, required=True)


def _usage_error(message: str, command: str | None = None) -> int:
    if not message.startswith(PROG):
        message = f"{PROG} {command}: error: {message}" if command else f"{PROG}: error: {message}"
    print(message, file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return _usage_error(str(error))
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)

    execution_id = os.environ.get("WARDEN_EXECUTION_ID") or None
    out = Output(runbook=args.command, dry_run=args.dry_run)
    ctx = Context(
        root=Path(args.root),
        state_dir_logical=args.state_dir,
        dry_run=args.dry_run,
        out=out,
        execution_id=execution_id,
    )
    try:
        result = args.runbook(args, ctx)
        exit_code, error = EXIT_DONE, None
    except UsageError as stop:
        return _usage_error(str(stop), args.command)
    except Stop as stop:
        result, exit_code, error = stop.result, stop.exit_code, str(stop)
    except Exception as unexpected:  # the summary line must still be printed
        result, exit_code = FAILED, EXIT_FAILED
        error = f"unexpected error: {type(unexpected).__name__}: {unexpected}"
    if error:
        sys.stdout.flush()
        print(f"{result}: {error}", file=sys.stderr, flush=True)
    print(out.summary(result, exit_code, error), flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
