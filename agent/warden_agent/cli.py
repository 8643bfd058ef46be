"""`warden-agent run` and `warden-agent check`.

    warden-agent run   [--config /etc/warden-agent/agent.toml] [flags]
    warden-agent check [--config /etc/warden-agent/agent.toml] [flags]

Flags override the config file. Bad input: exit 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from warden_agent import __version__
from warden_agent.agent import ALLOWLIST_PATH, Agent, run_until_signalled
from warden_agent.argv import allowlist_digest, placeholders
from warden_agent.client import ApiError, Client, Misconfigured, Unavailable
from warden_agent.config import (
    DEFAULT_CONFIG,
    KEYS,
    ConfigError,
    Settings,
    load_settings,
    parse_value,
    read_key,
)
from warden_agent.executor import AllowList, AllowListError, CommandExecutor, load_allowlist
from warden_agent.metrics import SystemMetrics

PROG = "warden-agent"
log = logging.getLogger("warden.agent")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One readable line instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _setting(parser: argparse.ArgumentParser, flag: str, metavar: str, help_text: str) -> None:
    """A flag overriding the config key of the same name (its value is checked the same way)."""
    parser.add_argument(f"--{flag}", metavar=metavar, default=None, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", help=f"TOML config file (default {DEFAULT_CONFIG} if present)"
    )
    _setting(common, "url", "URL", "Warden's base URL, e.g. https://warden.example.com")
    _setting(common, "host", "NAME", "this host's name in Warden (manage.py add_host NAME)")
    _setting(common, "key-file", "FILE", "file holding the host's API key (mode 600)")
    _setting(common, "allowlist", "FILE", "allow-list JSON {action: [argv template...]}")
    _setting(common, "interval", "SECONDS", "seconds between readings (default 5)")
    _setting(common, "post-every", "SECONDS", "seconds between posts (default: each reading)")
    _setting(common, "poll-wait", "SECONDS", "seconds one long poll waits (default 50)")
    _setting(common, "action-timeout", "SECONDS", "seconds an action may run (default 60)")
    _setting(
        common,
        "request-timeout",
        "SECONDS",
        "seconds Warden may take to answer before it counts as away (default 10)",
    )
    _setting(common, "spool-dir", "DIR", "where unacknowledged readings and results wait")
    _setting(common, "spool-limit", "N", "readings the spool keeps at most (default 20000)")
    _setting(common, "disk-path", "PATH", "filesystem whose usage is reported (default /)")
    _setting(common, "dns-name", "NAME", "name resolved to time DNS (default localhost)")
    _setting(common, "firewall-flag", "FILE", "a firewall change is requested while it exists")
    common.add_argument("-v", "--verbose", action="store_true", help="log every sample posted")

    parser = Parser(prog=PROG, description="The Warden agent for this host.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,check}")
    commands.add_parser("run", parents=[common], help="report metrics and run actions")
    commands.add_parser("check", parents=[common], help="check the config, key and server")
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, checked like the file's ("--interval abc" is refused)."""
    given = {key: getattr(args, key) for key in KEYS if getattr(args, key, None) is not None}
    return {
        key: parse_value(key, value if KEYS[key] == "text" else _number(value), "command line")
        for key, value in given.items()
    }


def _number(text: str) -> Any:
    """A flag's text as the number it spells, else unchanged (and refused as not a number)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def display(template: Sequence[str]) -> str:
    """A template as a shell would show it, placeholders as they are written."""
    return " ".join(e if placeholders([e]) else shlex.quote(e) for e in template)


# --- run ------------------------------------------------------------------------------


def build_agent(settings: Settings) -> Agent:
    """The agent `settings` describe; ConfigError or AllowListError saying what is wrong."""
    key = read_key(settings)
    executor = CommandExecutor(load_allowlist(settings.allowlist), settings.action_timeout)
    metrics = SystemMetrics(
        settings.host, settings.disk_path, settings.dns_name, settings.firewall_flag
    )
    try:
        return Agent(
            settings.url,
            key,
            settings.host,
            metrics,
            executor,
            interval=settings.interval,
            post_every=settings.post_every,
            poll_wait=settings.poll_wait,
            timeout=settings.request_timeout,
            spool_dir=settings.spool_dir,
            spool_limit=settings.spool_limit,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot use spool directory {settings.spool_dir}: {exc.strerror or exc}"
        ) from exc


def run(settings: Settings) -> int:
    agent = build_agent(settings)
    log.info(
        "warden-agent %s: host %s reporting to %s; %d action(s) allowed; spool %s",
        __version__,
        agent.host,
        agent.url,
        len(agent.executor.allowlist),
        settings.spool_dir,
    )
    return run_until_signalled([agent])


# --- check ----------------------------------------------------------------------------


def check_allowlist(settings: Settings, problems: list[str]) -> AllowList | None:
    try:
        entries = load_allowlist(settings.allowlist)
    except AllowListError as exc:
        problems.append(str(exc))
        return None
    print(f"allow-list {settings.allowlist}: {len(entries)} action(s)")
    for action, template in sorted(entries.items()):
        print(f"  {action}: {display(template)}")
    print(f"allow-list digest: {allowlist_digest(entries)}")
    return entries


def check_spool(settings: Settings, problems: list[str]) -> None:
    """The spool directory, or the nearest directory above it that exists, is writable."""
    path = Path(settings.spool_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    if os.access(path, os.W_OK | os.X_OK):
        print(f"spool directory {settings.spool_dir}: writable")
    else:
        problems.append(f"spool directory {settings.spool_dir}: {path} is not writable")


def check_server(settings: Settings, key: str, digest: str | None, problems: list[str]) -> None:
    """Test the connection and key with GET /api/v1/agent/allowlist (no side effect)."""
    try:
        held = Client(settings.url, key, settings.request_timeout).call("GET", ALLOWLIST_PATH)
    except Misconfigured as exc:
        problems.append(f"the server at {settings.url} refused the key: {exc}")
        return
    except Unavailable as exc:
        problems.append(f"cannot reach the server at {settings.url}: {exc}")
        return
    except ApiError as exc:
        problems.append(f"the server at {settings.url} cannot check the key ({exc}): too old?")
        return
    held = held if isinstance(held, dict) else {}
    print(f"server {settings.url}: reachable, key accepted")
    if held.get("host") not in (None, settings.host):
        problems.append(f"the key belongs to host {held['host']}, not to {settings.host}")
    server_digest = held.get("digest") or ""
    if digest is None:
        return
    if server_digest == digest:
        print("the server holds the same allow-list digest")
    elif not server_digest:
        print("the server holds no allow-list from this host yet (the agent sends it at start)")
    else:
        print(f"the server holds another allow-list digest, {server_digest}: restart the agent")


def check(settings: Settings) -> int:
    """Print what the agent would run and test the server; 1 with one line per problem."""
    problems: list[str] = []
    entries = check_allowlist(settings, problems)
    check_spool(settings, problems)
    for name in ("url", "host"):
        if not getattr(settings, name):
            problems.append(f"no {name}: set {name} in the config or pass --{name}")
    try:
        key = read_key(settings)
    except ConfigError as exc:
        problems.append(str(exc))
        key = ""
    if key and settings.url and settings.host:
        digest = allowlist_digest(entries) if entries is not None else None
        check_server(settings, key, digest, problems)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("all well")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        flags = overrides(args)
        settings = load_settings(args.config, flags, need_server=args.command == "run")
        return run(settings) if args.command == "run" else check(settings)
    except (ConfigError, AllowListError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
