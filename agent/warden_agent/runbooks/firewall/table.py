"""Warden's own nftables table, `table inet warden`: reading it and changing it.

Two address sets (IPv4, IPv6; elements expire on their own), an input chain that drops their
sources, and rules found again by their comment. Every change is one `nft -f -` transaction.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..common import Context, Failed

FAMILY = "inet"
TABLE = "warden"
CHAIN = "input"
SETS = {4: "blocked_ipv4", 6: "blocked_ipv6"}
SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
MATCH = {4: "ip", 6: "ip6"}


def block_comment(version: int) -> str:
    return f"warden: drop sources in {SETS[version]}"


def rate_limit_comment(port: int) -> str:
    return f"warden: rate limit tcp port {port}"


def element_text(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


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


def block_rules_present(rules: list[dict[str, Any]]) -> bool:
    comments = {rule.get("comment") for rule in rules}
    return all(block_comment(version) in comments for version in SETS)
