"""dns-flush, dns-switch, dns-revert: systemd-resolved, through resolvectl and systemctl.

Servers set with `resolvectl dns` are runtime settings: systemd-networkd or NetworkManager may
replace them when the link is reconfigured, and dns-revert puts back what was there before.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import time
from pathlib import Path

from .common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    Context,
    Failed,
    Refused,
    UsageError,
    already_done,
    ensure_state_dir,
    mark_done,
    now_iso,
    read_json,
    state_file,
    write_json_atomic,
)
from .units import require_loaded, systemctl_show

INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")
POLL_SECONDS = 0.5


def interface_name(text: str) -> str:
    if not INTERFACE.match(text):
        raise ValueError(f"{text!r} is not a network interface name")
    return text


def host_name(text: str) -> str:
    if not HOSTNAME.match(text):
        raise ValueError(f"{text!r} is not a host name")
    return text


def server_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as error:
        raise ValueError(f"{text!r} is not an IP address") from error


# ---------------------------------------------------------------- dns-flush


def dns_flush(args: argparse.Namespace, ctx: Context) -> str:
    unit: str = args.resolver_unit
    name: str = args.check_name
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    ctx.out.details.update(resolver_unit=unit, check_name=name)
    ctx.require_tool("resolvectl")
    shown = require_loaded(ctx, unit)
    ctx.line(f"check: {unit} is loaded, {shown.get('ActiveState')}")
    marks = {"unit": unit, "name": name}
    if (when := already_done(ctx, "dns-flush", marks)) is not None:
        ctx.line(f"nothing to do: this execution already restarted {unit} at {when}")
        return NOTHING_TO_DO
    if ctx.dry_run:
        ctx.change(["resolvectl", "flush-caches"])
        ctx.change(["systemctl", "restart", unit])
        ctx.line(f"would then wait up to {args.timeout:g} s for {name} to resolve")
        return DRY_RUN

    flushed = ctx.change(["resolvectl", "flush-caches"])
    if flushed is not None and not flushed.ok:
        ctx.line("flushing the caches failed; restarting the resolver anyway")
    restarted = ctx.change(["systemctl", "restart", unit])
    assert restarted is not None
    if not restarted.ok:
        raise Failed(f"systemctl restart {unit} failed: {restarted.first_error_line()}")

    # Post-check: the resolver is active and answers for the check name.
    deadline = time.monotonic() + args.timeout
    problem = "not checked"
    while True:
        state = systemctl_show(ctx, unit, ["ActiveState"]).get("ActiveState", "")
        if state == "failed":
            raise Failed(f"{unit} failed after the restart")
        if state != "active":
            problem = f"{unit} is {state}"
        else:
            remaining = max(1.0, deadline - time.monotonic())
            query = ctx.query(["resolvectl", "query", name], timeout=min(10.0, remaining))
            if query.ok:
                answer = query.stdout.strip().splitlines()
                ctx.line(f"ok: {name} resolves: {answer[0] if answer else ''}")
                mark_done(ctx, "dns-flush", marks)
                return DONE
            problem = f"{name} does not resolve: {query.first_error_line()}"
        if time.monotonic() >= deadline:
            raise Failed(f"after {args.timeout:g} s {problem}")
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------- dns-switch / dns-revert


def link_servers(ctx: Context, interface: str) -> list[str]:
    """The DNS servers resolved uses on the link: `Link 2 (eth0): 10.0.0.1 10.0.0.2`."""
    result = ctx.query(["resolvectl", "dns", interface])
    if not result.ok:
        raise Refused(f"resolvectl has no link {interface}: {result.first_error_line()}")
    for line in result.stdout.splitlines():
        head, sep, servers = line.partition("):")
        if sep and f"({interface}" in head:
            return servers.split()
    raise Failed(f"cannot read the DNS servers of {interface} from: {result.stdout.strip()!r}")


def _dns_state(ctx: Context, interface: str) -> Path:
    return state_file(ctx, "dns", f"{interface}.json")


def dns_switch(args: argparse.Namespace, ctx: Context) -> str:
    interface: str = args.interface
    server: str = args.server
    ctx.out.details.update(interface=interface, server=server)
    ctx.require_tool("resolvectl")
    current = link_servers(ctx, interface)
    ctx.line(f"check: {interface} uses DNS servers: {' '.join(current) or '(none)'}")
    if current == [server]:
        ctx.line(f"nothing to do: {interface} already uses only {server}")
        return NOTHING_TO_DO
    state_path = _dns_state(ctx, interface)
    recorded = read_json(state_path)
    if ctx.dry_run:
        if recorded is None:
            ctx.line(f"would record the current servers in {state_path}")
        ctx.change(["resolvectl", "dns", interface, server])
        ctx.change(["resolvectl", "flush-caches"])
        return DRY_RUN
    if recorded is None:
        ensure_state_dir(ctx, "dns")
        write_json_atomic(
            state_path,
            {"interface": interface, "previous": current, "server": server, "at": now_iso()},
        )
        ctx.line("recorded the current servers for dns-revert")
    result = ctx.change(["resolvectl", "dns", interface, server])
    assert result is not None
    if not result.ok:
        raise Failed(f"resolvectl dns failed: {result.first_error_line()}")
    ctx.change(["resolvectl", "flush-caches"])
    after = link_servers(ctx, interface)
    if after != [server]:
        raise Failed(f"{interface} uses {' '.join(after) or '(none)'}, not {server}")
    ctx.line(f"ok: {interface} uses {server}")
    return DONE


def dns_revert(args: argparse.Namespace, ctx: Context) -> str:
    interface: str = args.interface
    ctx.out.details.update(interface=interface)
    state_path = _dns_state(ctx, interface)
    recorded = read_json(state_path)
    if recorded is None:
        ctx.line(f"nothing to do: no DNS switch of {interface} is recorded")
        return NOTHING_TO_DO
    previous = recorded.get("previous")
    if not isinstance(previous, list) or not all(isinstance(s, str) for s in previous):
        raise Refused(f"{state_path} holds no list of servers")
    ctx.require_tool("resolvectl")
    current = link_servers(ctx, interface)
    shown = " ".join(previous) or "(none)"
    ctx.out.details.update(servers=previous)
    if current == previous:
        ctx.line(f"{interface} already uses its recorded servers: {shown}")
        if not ctx.dry_run:
            state_path.unlink()
            ctx.line(f"removed {state_path}")
        return NOTHING_TO_DO
    # An empty string clears the link's list (it had none before the switch).
    argv = ["resolvectl", "dns", interface, *(previous or [""])]
    if ctx.dry_run:
        ctx.change(argv)
        ctx.change(["resolvectl", "flush-caches"])
        ctx.line(f"would remove {state_path}")
        return DRY_RUN
    result = ctx.change(argv)
    assert result is not None
    if not result.ok:
        raise Failed(f"resolvectl dns failed: {result.first_error_line()}")
    ctx.change(["resolvectl", "flush-caches"])
    after = link_servers(ctx, interface)
    if after != previous:
        raise Failed(f"{interface} uses {' '.join(after) or '(none)'}, not {shown}")
    state_path.unlink()
    ctx.line(f"ok: {interface} uses {shown} again; state removed")
    return DONE
