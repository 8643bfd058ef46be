"""nft-block and nft-unblock: drop traffic from an address or network for a while, and stop.

The address goes into Warden's set for its IP version with a timeout (nft removes it when it
expires). Blocking refuses loopback, unspecified and multicast addresses, networks wider than
WIDEST_PREFIX, and a network that only partly overlaps one blocked already.
"""

from __future__ import annotations

import argparse
import ipaddress
import re

from ..common import DONE, DRY_RUN, NOTHING_TO_DO, Context, Failed, Refused
from .table import (
    CHAIN,
    FAMILY,
    SETS,
    TABLE,
    apply_script,
    block_rules_present,
    element_of,
    set_elements,
    table_lines,
    warden_rules,
)

# Refuse to block a network wider than this: it would cut off most of the internet.
WIDEST_PREFIX = {4: 16, 6: 32}
NFT_TIMEOUT = re.compile(r"^(?=\d)(\d+d)?(\d+h)?(\d+m)?(\d+s)?$")


def ip_target(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise ValueError(f"{text!r} is not an IP address or network ({error})") from error


def nft_timeout(text: str) -> str:
    if not NFT_TIMEOUT.match(text) or not any(c in "123456789" for c in text):
        raise ValueError(f"{text!r} is not a timeout like 1h, 30m or 1d")
    return text


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
    if covering is not None and block_rules_present(rules):
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
    if not block_rules_present(warden_rules(ctx)):
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
