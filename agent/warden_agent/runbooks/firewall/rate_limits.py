"""nft-rate-limit and nft-remove-rate-limit: cap new TCP connections to a port.

The limit is one rule in Warden's chain, found again by its comment: setting another rate
replaces it in place, in the same transaction.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..common import DONE, DRY_RUN, NOTHING_TO_DO, Context, Failed
from .table import (
    CHAIN,
    FAMILY,
    TABLE,
    apply_script,
    block_rules_present,
    rate_limit_comment,
    table_lines,
    warden_rules,
)

RATE = re.compile(r"^(\d{1,9})/(second|minute|hour|day)$")


def nft_rate(text: str) -> str:
    if not RATE.match(text) or int(text.split("/")[0]) == 0:
        raise ValueError(f"{text!r} is not a rate like 100/second")
    return text


def tcp_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port (1..65535)")
    return int(text)


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
    if len(tagged) == 1 and _limit_of(tagged[0]) == wanted and block_rules_present(rules):
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
