"""restart-unit, cpu-throttle, cpu-unthrottle: systemd units, through systemctl."""

from __future__ import annotations

import argparse
import http.client
import re
import socket
import time
import urllib.parse
from collections.abc import Sequence
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

POLL_SECONDS = 0.5
QUOTA = re.compile(r"^(\d{1,6})(\.\d{1,2})?%$")
# Units that have a cgroup, so a CPU quota means something.
CGROUP_UNIT = re.compile(r"\.(service|slice|scope|socket|mount|swap)$")
TIMESPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(us|µs|ms|s|sec|min|m|h|d|w)?")
TIMESPAN_USEC = {
    "us": 1,
    "µs": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "min": 60_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}


def systemctl_show(ctx: Context, unit: str, properties: Sequence[str]) -> dict[str, str]:
    result = ctx.query(["systemctl", "show", unit, f"--property={','.join(properties)}"])
    if not result.ok:
        raise Failed(f"systemctl show {unit} failed: {result.first_error_line()}")
    shown: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            shown[key] = value
    return shown


def require_loaded(ctx: Context, unit: str) -> dict[str, str]:
    """Pre-check: systemd knows the unit (and it is not masked)."""
    ctx.require_tool("systemctl")
    shown = systemctl_show(ctx, unit, ["LoadState", "ActiveState", "SubState", "InvocationID"])
    load = shown.get("LoadState", "")
    if load != "loaded":
        raise Refused(f"unit {unit} is not loaded (LoadState={load or 'unknown'})")
    return shown


# ---------------------------------------------------------------- restart-unit


def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text


def check_tcp(address: tuple[str, int], timeout: float) -> str | None:
    try:
        with socket.create_connection(address, timeout=timeout):
            return None
    except OSError as error:
        return f"tcp {address[0]}:{address[1]}: {error.strerror or error}"


def check_http(url: str, timeout: float) -> str | None:
    """None when the URL answers with a status below 400 (redirects are not followed)."""
    parts = urllib.parse.urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "warden-runbook"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        return f"{url}: {getattr(error, 'strerror', None) or error}"
    finally:
        connection.close()
    return None if status < 400 else f"{url} answered {status}"


def restart_unit(args: argparse.Namespace, ctx: Context) -> str:
    unit: str = args.unit
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    ctx.out.details.update(unit=unit)
    before = require_loaded(ctx, unit)
    ctx.line(f"check: {unit} is loaded, {before.get('ActiveState')} ({before.get('SubState')})")

    marks = {
        "unit": unit,
        "tcp": args.check_tcp,
        "http": args.check_http,
        "active": args.check_active,
    }
    if (when := already_done(ctx, "restart-unit", marks)) is not None:
        ctx.line(f"nothing to do: this execution already restarted {unit} at {when}")
        return NOTHING_TO_DO

    checks = ["active"]
    if args.check_active:
        checks.append(f"really restarted and still active after {args.settle_seconds:g} s")
    checks += [f"tcp {host}:{port}" for host, port in args.check_tcp or []]
    checks += [f"http {url}" for url in args.check_http or []]
    if ctx.dry_run:
        ctx.change(["systemctl", "restart", unit])
        ctx.line(f"would then wait up to {args.timeout:g} s for: {'; '.join(checks)}")
        return DRY_RUN

    # One deadline for the restart and the checks: the run takes at most --timeout seconds.
    deadline = time.monotonic() + args.timeout
    result = ctx.change(["systemctl", "restart", unit], timeout=args.timeout)
    assert result is not None
    if not result.ok:
        raise Failed(f"systemctl restart {unit} failed: {result.first_error_line()}")

    # Post-check: active and every health check passing, within the timeout.
    problem = _wait_healthy(ctx, args, before.get("InvocationID", ""), deadline)
    if problem:
        raise Failed(f"{unit} is not healthy after {args.timeout:g} s: {problem}")
    ctx.line(f"ok: {unit} is active; passed: {'; '.join(checks)}")
    mark_done(ctx, "restart-unit", marks)
    return DONE


def _wait_healthy(
    ctx: Context, args: argparse.Namespace, old_invocation: str, deadline: float
) -> str | None:
    unit = args.unit
    problem: str | None = "not checked"
    healthy_since: float | None = None
    invocation = ""
    while True:
        remaining = deadline - time.monotonic()
        shown = systemctl_show(ctx, unit, ["ActiveState", "SubState", "InvocationID"])
        state = shown.get("ActiveState", "")
        if state == "failed":
            return f"{unit} failed ({shown.get('SubState')})"
        problem = None if state == "active" else f"{unit} is {state} ({shown.get('SubState')})"
        if problem is None and args.check_active:
            now_invocation = shown.get("InvocationID", "")
            if old_invocation and now_invocation == old_invocation:
                problem = f"{unit} still runs the invocation from before the restart"
            elif healthy_since is not None and now_invocation != invocation:
                problem = f"{unit} restarted again on its own"
                healthy_since = None
            invocation = now_invocation
        per_check = max(0.5, min(5.0, remaining))
        if problem is None:
            for address in args.check_tcp or []:
                problem = problem or check_tcp(address, per_check)
            for url in args.check_http or []:
                problem = problem or check_http(url, per_check)
        if problem is None:
            if not args.check_active:
                return None
            healthy_since = healthy_since or time.monotonic()
            if time.monotonic() - healthy_since >= args.settle_seconds:
                return None
        else:
            healthy_since = None
        if time.monotonic() >= deadline:
            return problem or "did not stay active long enough"
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


# ---------------------------------------------------------------- cpu-throttle / cpu-unthrottle


def parse_timespan_usec(text: str) -> int | None:
    """systemd's timespan ("1s 500ms", "500ms", "infinity") in microseconds; None = no limit."""
    text = text.strip()
    if text in ("", "infinity"):
        return None
    total = 0.0
    position = 0
    for match in TIMESPAN_PART.finditer(text):
        if text[position : match.start()].strip():
            raise ValueError(f"not a systemd timespan: {text!r}")
        total += float(match.group(1)) * TIMESPAN_USEC[match.group(2) or "us"]
        position = match.end()
    if position == 0 or text[position:].strip():
        raise ValueError(f"not a systemd timespan: {text!r}")
    return round(total)


def quota_usec(quota: str) -> int:
    """CPUQuota=50% is 500ms of CPU time per second."""
    return round(float(quota.rstrip("%")) * 10_000)


def quota_from_usec(usec: int | None) -> str:
    if usec is None:
        return ""
    percent = usec / 10_000
    return f"{percent:.2f}".rstrip("0").rstrip(".") + "%"


def _current_quota(ctx: Context, unit: str) -> tuple[str, int | None]:
    raw = systemctl_show(ctx, unit, ["CPUQuotaPerSecUSec"]).get("CPUQuotaPerSecUSec", "")
    try:
        return raw, parse_timespan_usec(raw)
    except ValueError as error:
        raise Failed(f"cannot read the CPU quota of {unit}: {error}") from error


def _throttle_state(ctx: Context, unit: str) -> Path:
    return state_file(ctx, "cpu-throttle", f"{unit}.json")


def cpu_throttle(args: argparse.Namespace, ctx: Context) -> str:
    unit: str = args.unit
    quota: str = args.quota
    if not QUOTA.match(quota) or quota_usec(quota) <= 0:
        raise UsageError(f"--quota {quota!r} must be a percentage like 50%")
    if not CGROUP_UNIT.search(unit):
        raise UsageError(f"{unit} has no cgroup to throttle (use a .service or .slice)")
    ctx.out.details.update(unit=unit, quota=quota)
    require_loaded(ctx, unit)
    raw, current = _current_quota(ctx, unit)
    target = quota_usec(quota)
    ctx.line(f"check: {unit} has CPUQuotaPerSecUSec={raw or 'infinity'}")

    state_path = _throttle_state(ctx, unit)
    recorded = read_json(state_path)
    if current == target:
        ctx.line(f"nothing to do: {unit} already has CPUQuota={quota}")
        return NOTHING_TO_DO
    if ctx.dry_run:
        if recorded is None:
            ctx.line(f"would record the current quota ({raw or 'infinity'}) in {state_path}")
        ctx.change(["systemctl", "set-property", "--runtime", unit, f"CPUQuota={quota}"])
        return DRY_RUN

    if recorded is None:
        # Recorded once: a second throttle keeps the value from before the first one.
        ensure_state_dir(ctx, "cpu-throttle")
        write_json_atomic(
            state_path,
            {"unit": unit, "previous": raw or "infinity", "quota": quota, "at": now_iso()},
        )
        ctx.line(f"recorded the current quota ({raw or 'infinity'}) for cpu-unthrottle")
    result = ctx.change(["systemctl", "set-property", "--runtime", unit, f"CPUQuota={quota}"])
    assert result is not None
    if not result.ok:
        raise Failed(f"systemctl set-property failed: {result.first_error_line()}")
    raw_after, after = _current_quota(ctx, unit)
    if after != target:
        raise Failed(f"{unit} reports CPUQuotaPerSecUSec={raw_after}, not {quota}")
    ctx.line(f"ok: {unit} has CPUQuotaPerSecUSec={raw_after} ({quota})")
    return DONE


def cpu_unthrottle(args: argparse.Namespace, ctx: Context) -> str:
    unit: str = args.unit
    ctx.out.details.update(unit=unit)
    state_path = _throttle_state(ctx, unit)
    recorded = read_json(state_path)
    if recorded is None:
        ctx.line(f"nothing to do: no throttle of {unit} is recorded")
        return NOTHING_TO_DO
    try:
        previous = parse_timespan_usec(str(recorded.get("previous", "")))
    except ValueError as error:
        raise Refused(f"{state_path} holds no usable quota: {error}") from error
    require_loaded(ctx, unit)
    _raw, current = _current_quota(ctx, unit)
    setting = f"CPUQuota={quota_from_usec(previous)}"
    shown_previous = recorded.get("previous")
    if current == previous:
        ctx.line(f"{unit} already has its recorded quota ({shown_previous})")
        if not ctx.dry_run:
            state_path.unlink()
            ctx.line(f"removed {state_path}")
        return NOTHING_TO_DO
    if ctx.dry_run:
        ctx.change(["systemctl", "set-property", "--runtime", unit, setting])
        ctx.line(f"would remove {state_path}")
        return DRY_RUN
    result = ctx.change(["systemctl", "set-property", "--runtime", unit, setting])
    assert result is not None
    if not result.ok:
        raise Failed(f"systemctl set-property failed: {result.first_error_line()}")
    raw_after, after = _current_quota(ctx, unit)
    if after != previous:
        raise Failed(f"{unit} reports CPUQuotaPerSecUSec={raw_after}, not {shown_previous}")
    state_path.unlink()
    ctx.line(f"ok: {unit} has CPUQuotaPerSecUSec={raw_after or 'infinity'} again; state removed")
    return DONE
