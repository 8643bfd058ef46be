"""nft-apply, nft-revert, nft-block, nft-unblock, nft-rate-limit, nft-remove-rate-limit.

nft-apply/nft-revert change the whole ruleset from a reviewed file and back from a snapshot.
The others touch only Warden's own table, `table inet warden`: two address sets (IPv4, IPv6;
elements expire on their own) and an input chain that drops their sources, plus rate-limit
rules found again by their comment. Every change is one `nft -f` transaction: it applies
entirely or not at all.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    Context,
    Failed,
    Refused,
    ensure_state_dir,
    now_iso,
    read_json,
    sha256_bytes,
    state_file,
    write_atomic,
    write_json_atomic,
)

FAMILY = "inet"
TABLE = "warden"
CHAIN = "input"
SETS = {4: "blocked_ipv4", 6: "blocked_ipv6"}
SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
MATCH = {4: "ip", 6: "ip6"}
# Refuse to block a network wider than this: it would cut off most of the internet.
WIDEST_PREFIX = {4: 16, 6: 32}
NFT_TIMEOUT = re.compile(r"^(?=\d)(\d+d)?(\d+h)?(\d+m)?(\d+s)?$")
RATE = re.compile(r"^(\d{1,9})/(second|minute|hour|day)$")
DECLARED_TABLE = re.compile(r"^\s*(?:add\s+|create\s+)?table\s+(?:(\w+)\s+)?([\w.-]+)", re.M)


def block_comment(version: int) -> str:
    return f"warden: drop sources in {SETS[version]}"


def rate_limit_comment(port: int) -> str:
    return f"warden: rate limit tcp port {port}"


# ---------------------------------------------------------------- argument types


def ip_target(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise ValueError(f"{text!r} is not an IP address or network ({error})") from error


def nft_timeout(text: str) -> str:
    if not NFT_TIMEOUT.match(text) or not any(c in "123456789" for c in text):
        raise ValueError(f"{text!r} is not a timeout like 1h, 30m or 1d")
    return text


def nft_rate(text: str) -> str:
    if not RATE.match(text) or int(text.split("/")[0]) == 0:
        raise ValueError(f"{text!r} is not a rate like 100/second")
    return text


def tcp_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port (1..65535)")
    return int(text)


def element_text(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


# ---------------------------------------------------------------- reading the ruleset


def nft_json(ctx: Context, args: Sequence[str]) -> list[dict[str, Any]] | None:
    """`nft -j ARGS` as a list of objects; None when nft says there is no such thing."""
    result = ctx.query(["nft", "-j", *args])
    if not result.ok:
        return None
    try:
        return list(json.loads(result.stdout).get("nftables", []))
    except ValueError as error:
        raise Failed(f"nft -j {' '.join(args)} printed no JSON: {error}") from error


def warden_rules(ctx: Context) -> list[dict[str, Any]]:
    objects = nft_json(ctx, ["-a", "list", "chain", FAMILY, TABLE, CHAIN]) or []
    return [obj["rule"] for obj in objects if "rule" in obj]


@dataclass(frozen=True)
class Element:
    first: ipaddress.IPv4Address | ipaddress.IPv6Address
    last: ipaddress.IPv4Address | ipaddress.IPv6Address
    text: str
    expires: int | None

    def covers(self, other: Element) -> bool:
        return self.first <= other.first and other.last <= self.last

    def overlaps(self, other: Element) -> bool:
        return not (other.last < self.first or self.last < other.first)


def element_of(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Element:
    return Element(network.network_address, network.broadcast_address, element_text(network), None)


def _parse_element(raw: Any) -> Element:
    meta: dict[str, Any] = {}
    value = raw
    if isinstance(raw, dict) and "elem" in raw:
        meta = raw["elem"]
        value = meta["val"]
    if isinstance(value, str):
        element = element_of(ipaddress.ip_network(value, strict=False))
    elif "prefix" in value:
        prefix = value["prefix"]
        element = element_of(ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}"))
    elif "range" in value:
        first, last = (ipaddress.ip_address(v) for v in value["range"])
        element = Element(first, last, f"{first}-{last}", None)
    else:
        raise Failed(f"nft listed a set element this does not understand: {raw!r}")
    expires = meta.get("expires")
    return Element(element.first, element.last, element.text, expires)


def set_elements(ctx: Context, version: int) -> list[Element] | None:
    """The elements of the warden set for this IP version; None when the set does not exist."""
    objects = nft_json(ctx, ["list", "set", FAMILY, TABLE, SETS[version]])
    if objects is None:
        return None
    elements: list[Element] = []
    for obj in objects:
        for raw in obj.get("set", {}).get("elem", []):
            elements.append(_parse_element(raw))
    return elements


def table_lines(rules: list[dict[str, Any]]) -> list[str]:
    """nft commands that create Warden's table, sets, chain and drop rules where missing."""
    lines = [f"add table {FAMILY} {TABLE}"]
    for version, name in SETS.items():
        lines.append(
            f"add set {FAMILY} {TABLE} {name} "
            f"{{ type {SET_TYPES[version]}; flags interval, timeout; }}"
        )
    lines.append(
        f"add chain {FAMILY} {TABLE} {CHAIN} "
        f"{{ type filter hook input priority filter - 10; policy accept; }}"
    )
    comments = {rule.get("comment") for rule in rules}
    for version, name in SETS.items():
        if block_comment(version) not in comments:
            lines.append(
                f"add rule {FAMILY} {TABLE} {CHAIN} {MATCH[version]} saddr @{name} drop "
                f'comment "{block_comment(version)}"'
            )
    return lines


def apply_script(ctx: Context, lines: list[str]) -> None:
    """One `nft -f -` transaction (printed line by line: the output records what changed)."""
    script = "\n".join(lines) + "\n"
    for line in lines:
        ctx.line(f"  nft> {line}")
    result = ctx.change(["nft", "-f", "-"], stdin=script)
    if result is not None and not result.ok:
        raise Failed(f"nft refused the change: {result.first_error_line()}")


def _block_rules_present(rules: list[dict[str, Any]]) -> bool:
    comments = {rule.get("comment") for rule in rules}
    return all(block_comment(version) in comments for version in SETS)


# ---------------------------------------------------------------- nft-block / nft-unblock


def nft_block(args: argparse.Namespace, ctx: Context) -> str:
    network = args.address
    version = network.version
    target = element_of(network)
    ctx.out.details.update(address=target.text, timeout=args.timeout, set=SETS[version])
    if network.is_loopback or network.is_unspecified or network.is_multicast:
        raise Refused(f"refusing to block {target.text}: loopback, unspecified or multicast")
    if network.prefixlen < WIDEST_PREFIX[version]:
        raise Refused(
            f"refusing to block {target.text}: wider than /{WIDEST_PREFIX[version]} "
            f"would cut off too much"
        )
    ctx.require_tool("nft")
    rules = warden_rules(ctx)
    elements = set_elements(ctx, version) or []
    covering = next((e for e in elements if e.covers(target)), None)
    if covering is None:
        clash = next((e for e in elements if e.overlaps(target)), None)
        if clash is not None:
            raise Refused(f"{target.text} overlaps the blocked {clash.text}; unblock it first")
    if covering is not None and _block_rules_present(rules):
        expiry = f", expires in {covering.expires} s" if covering.expires is not None else ""
        if covering.text == target.text:
            ctx.line(f"nothing to do: {target.text} is already blocked{expiry}")
        else:
            ctx.line(f"nothing to do: {target.text} is inside the blocked {covering.text}{expiry}")
        return NOTHING_TO_DO

    lines = table_lines(rules)
    if covering is None:
        lines.append(
            f"add element {FAMILY} {TABLE} {SETS[version]} "
            f"{{ {target.text} timeout {args.timeout} }}"
        )
    if ctx.dry_run:
        ctx.line("would apply in one transaction:")
    apply_script(ctx, lines)
    if ctx.dry_run:
        return DRY_RUN

    # Post-check: the address is in the set and the chain drops the set's sources.
    after = set_elements(ctx, version) or []
    present = next((e for e in after if e.covers(target)), None)
    if present is None:
        raise Failed(f"{target.text} is not in {SETS[version]} after the change")
    if not _block_rules_present(warden_rules(ctx)):
        raise Failed(f"the drop rules are missing from {FAMILY} {TABLE} {CHAIN}")
    expiry = f" (expires in {present.expires} s)" if present.expires is not None else ""
    ctx.line(f"ok: {target.text} is blocked{expiry}")
    return DONE


def nft_unblock(args: argparse.Namespace, ctx: Context) -> str:
    network = args.address
    version = network.version
    target = element_of(network)
    ctx.out.details.update(address=target.text, set=SETS[version])
    ctx.require_tool("nft")
    elements = set_elements(ctx, version)
    if elements is None:
        ctx.line(f"nothing to do: there is no set {FAMILY} {TABLE} {SETS[version]}")
        return NOTHING_TO_DO
    inside = [e for e in elements if target.covers(e)]
    wider = next((e for e in elements if e.overlaps(target) and not target.covers(e)), None)
    if wider is not None:
        raise Refused(f"{target.text} is part of the blocked {wider.text}; unblock that instead")
    if not inside:
        ctx.line(f"nothing to do: {target.text} is not blocked")
        return NOTHING_TO_DO
    listed = ", ".join(e.text for e in inside)
    lines = [f"delete element {FAMILY} {TABLE} {SETS[version]} {{ {listed} }}"]
    if ctx.dry_run:
        ctx.line("would apply in one transaction:")
    apply_script(ctx, lines)
    if ctx.dry_run:
        return DRY_RUN
    still = [e for e in set_elements(ctx, version) or [] if e.overlaps(target)]
    if still:
        raise Failed(f"{still[0].text} is still blocked after the change")
    ctx.line(f"ok: unblocked {listed}")
    ctx.out.details.update(unblocked=[e.text for e in inside])
    return DONE


# ---------------------------------------------------------------- rate limits


def _limit_of(rule: dict[str, Any]) -> tuple[int, str] | None:
    for expression in rule.get("expr", []):
        limit = expression.get("limit") if isinstance(expression, dict) else None
        if limit and limit.get("inv"):
            return int(limit["rate"]), str(limit["per"])
    return None


def nft_rate_limit(args: argparse.Namespace, ctx: Context) -> str:
    port: int = args.port
    rate: str = args.rate
    amount, per = rate.split("/")
    comment = rate_limit_comment(port)
    ctx.out.details.update(port=port, rate=rate)
    ctx.require_tool("nft")
    rules = warden_rules(ctx)
    tagged = [rule for rule in rules if rule.get("comment") == comment]
    wanted = (int(amount), per)
    if len(tagged) == 1 and _limit_of(tagged[0]) == wanted and _block_rules_present(rules):
        ctx.line(f"nothing to do: tcp port {port} is already limited to {rate}")
        return NOTHING_TO_DO

    rule = f'tcp dport {port} ct state new limit rate over {rate} drop comment "{comment}"'
    lines = table_lines(rules)
    if tagged:
        # Same comment, other rate (or a duplicate): replace in place, in the same transaction.
        lines.append(f"replace rule {FAMILY} {TABLE} {CHAIN} handle {tagged[0]['handle']} {rule}")
        lines += [
            f"delete rule {FAMILY} {TABLE} {CHAIN} handle {extra['handle']}" for extra in tagged[1:]
        ]
    else:
        lines.append(f"add rule {FAMILY} {TABLE} {CHAIN} {rule}")
    if ctx.dry_run:
        ctx.line("would apply in one transaction:")
    apply_script(ctx, lines)
    if ctx.dry_run:
        return DRY_RUN
    after = [r for r in warden_rules(ctx) if r.get("comment") == comment]
    if len(after) != 1 or _limit_of(after[0]) != wanted:
        raise Failed(f"the rate limit on tcp port {port} is not in place after the change")
    ctx.line(f"ok: new tcp connections to port {port} over {rate} are dropped")
    ctx.out.details.update(handle=after[0].get("handle"))
    return DONE


def nft_remove_rate_limit(args: argparse.Namespace, ctx: Context) -> str:
    port: int = args.port
    comment = rate_limit_comment(port)
    ctx.out.details.update(port=port)
    ctx.require_tool("nft")
    tagged = [rule for rule in warden_rules(ctx) if rule.get("comment") == comment]
    if not tagged:
        ctx.line(f"nothing to do: tcp port {port} has no warden rate limit")
        return NOTHING_TO_DO
    lines = [f"delete rule {FAMILY} {TABLE} {CHAIN} handle {rule['handle']}" for rule in tagged]
    if ctx.dry_run:
        ctx.line("would apply in one transaction:")
    apply_script(ctx, lines)
    if ctx.dry_run:
        return DRY_RUN
    if any(rule.get("comment") == comment for rule in warden_rules(ctx)):
        raise Failed(f"the rate limit on tcp port {port} is still there")
    ctx.line(f"ok: removed the rate limit on tcp port {port}")
    return DONE


# ---------------------------------------------------------------- nft-apply / nft-revert


def _nft_state(ctx: Context, name: str) -> Path:
    return state_file(ctx, "nft", name)


def list_ruleset(ctx: Context, *, stateless: bool) -> str:
    argv = ["nft", "-s", "list", "ruleset"] if stateless else ["nft", "list", "ruleset"]
    result = ctx.query(argv)
    if not result.ok:
        raise Failed(f"nft list ruleset failed: {result.first_error_line()}")
    return result.stdout


def restore_script(snapshot: str) -> str:
    return "flush ruleset\n" + snapshot


def check_file(ctx: Context, path: Path) -> str | None:
    result = ctx.query(["nft", "-c", "-f", str(path)])
    return None if result.ok else result.first_error_line()


def nft_apply(args: argparse.Namespace, ctx: Context) -> str:
    logical: str = args.file
    change_file = ctx.path(logical)
    ctx.require_tool("nft")
    if not change_file.is_file():
        raise Refused(f"{logical} is not a file")
    content = change_file.read_bytes()
    file_sha = sha256_bytes(content)
    ctx.out.details.update(file=logical, file_sha256=file_sha)
    if problem := check_file(ctx, change_file):
        raise Refused(f"nft does not accept {logical}: {problem}")
    ctx.line(f"check: nft accepts {logical}")

    state_path = _nft_state(ctx, "change.json")
    recorded = read_json(state_path)
    current_stateless = list_ruleset(ctx, stateless=True)
    current_sha = sha256_bytes(current_stateless.encode())
    if (
        recorded
        and recorded.get("file_sha256") == file_sha
        and recorded.get("applied_ruleset_sha256") == current_sha
    ):
        ctx.line(f"nothing to do: {logical} (sha256 {file_sha}) is applied and unchanged since")
        return NOTHING_TO_DO

    # An interrupted earlier run of this same change keeps its snapshot (it is the one from
    # before the change); otherwise the current ruleset becomes the one nft-revert restores.
    snapshot = _nft_state(ctx, "snapshot.nft")
    keep_snapshot = bool(
        recorded
        and recorded.get("status") == "applying"
        and recorded.get("file_sha256") == file_sha
        and snapshot.is_file()
    )
    if keep_snapshot:
        snapshot_text = snapshot.read_text()
    else:
        snapshot_text = list_ruleset(ctx, stateless=False)
        # Pre-check: what we would restore can be restored, or the change is not reversible.
        probe = ctx.query(["nft", "-c", "-f", "-"], stdin=restore_script(snapshot_text))
        if not probe.ok:
            raise Refused(
                f"the current ruleset could not be restored by nft-revert: "
                f"{probe.first_error_line()}"
            )
        if recorded and not ctx.dry_run:
            ctx.line(
                f"the earlier change {recorded.get('file')} (sha256 "
                f"{recorded.get('file_sha256')}) stays; nft-revert now returns to the ruleset "
                f"as it is now"
            )

    ctx.line(f"change file {logical} sha256 {file_sha}:")
    for line in content.decode("utf-8", errors="replace").splitlines():
        ctx.line(f"  | {line}")
    if ctx.dry_run:
        if not keep_snapshot:
            ctx.line(f"would save the current ruleset to {snapshot} for nft-revert")
        ctx.change(["nft", "-f", str(change_file)])
        return DRY_RUN

    if not keep_snapshot:
        ensure_state_dir(ctx, "nft")
        write_atomic(snapshot, snapshot_text.encode())
        write_atomic(_nft_state(ctx, "snapshot.stateless.nft"), current_stateless.encode())
        ctx.line(f"saved the current ruleset to {snapshot} for nft-revert")
    record = {
        "file": logical,
        "file_sha256": file_sha,
        "snapshot_sha256": sha256_bytes(snapshot_text.encode()),
        "status": "applying",
        "execution_id": ctx.execution_id,
        "at": now_iso(),
    }
    write_json_atomic(state_path, record)
    result = ctx.change(["nft", "-f", str(change_file)])
    assert result is not None
    if not result.ok:
        record["status"] = "failed"
        write_json_atomic(state_path, record)
        raise Failed(f"nft -f {logical} failed: {result.first_error_line()}")

    # Post-check: the ruleset lists, and every table the file declares is in it.
    applied = list_ruleset(ctx, stateless=True)
    missing = [
        f"{family or 'ip'} {name}"
        for family, name in DECLARED_TABLE.findall(content.decode("utf-8", errors="replace"))
        if not re.search(rf"^table {family or 'ip'} {re.escape(name)} ", applied, re.M)
    ]
    if missing:
        raise Failed(f"after nft -f, the ruleset lacks table {missing[0]} declared by {logical}")
    record.update(status="applied", applied_ruleset_sha256=sha256_bytes(applied.encode()))
    write_json_atomic(state_path, record)
    ctx.line(f"ok: applied {logical}; nft-revert restores the saved ruleset")
    return DONE


def nft_revert(args: argparse.Namespace, ctx: Context) -> str:
    state_path = _nft_state(ctx, "change.json")
    recorded = read_json(state_path)
    if recorded is None:
        ctx.line("nothing to do: no applied firewall change is recorded")
        return NOTHING_TO_DO
    ctx.out.details.update(file=recorded.get("file"), file_sha256=recorded.get("file_sha256"))
    applied_by = recorded.get("execution_id")
    if ctx.execution_id and applied_by and applied_by != ctx.execution_id:
        # A later change replaced the snapshot: restoring it would undo that change instead.
        raise Refused(
            f"the recorded change was applied by execution {applied_by}, not "
            f"{ctx.execution_id}; reverting it would undo that change"
        )
    ctx.require_tool("nft")
    snapshot = _nft_state(ctx, "snapshot.nft")
    stateless_snapshot = _nft_state(ctx, "snapshot.stateless.nft")
    try:
        snapshot_text = snapshot.read_text()
        expected = stateless_snapshot.read_text()
    except OSError as error:
        raise Refused(f"the saved ruleset is missing: {error}") from error
    if sha256_bytes(snapshot_text.encode()) != recorded.get("snapshot_sha256"):
        raise Refused(f"{snapshot} changed since it was saved (SHA-256 differs)")
    script = restore_script(snapshot_text)
    probe = ctx.query(["nft", "-c", "-f", "-"], stdin=script)
    if not probe.ok:
        raise Refused(f"nft does not accept the saved ruleset: {probe.first_error_line()}")

    state_files = [state_path, snapshot, stateless_snapshot]
    if list_ruleset(ctx, stateless=True) == expected:
        ctx.line("the ruleset already matches the one saved before the change")
        if not ctx.dry_run:
            _remove(state_files)
            ctx.line("removed the saved ruleset")
        return NOTHING_TO_DO
    ctx.line(
        f"restoring the ruleset saved at {recorded.get('at')} before {recorded.get('file')} "
        f"(sha256 {recorded.get('snapshot_sha256')}), in one transaction"
    )
    if ctx.dry_run:
        ctx.line(f"would run: nft -f - (flush ruleset, then {snapshot})")
        return DRY_RUN
    result = ctx.change(["nft", "-f", "-"], stdin=script, echo_output=True)
    assert result is not None
    if not result.ok:
        raise Failed(f"nft refused the saved ruleset: {result.first_error_line()}")
    if list_ruleset(ctx, stateless=True) != expected:
        raise Failed("after the restore the ruleset differs from the one saved")
    _remove(state_files)
    ctx.line("ok: the ruleset is back to the one saved before the change")
    return DONE


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
