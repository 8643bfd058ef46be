"""Filesystems' space: what a run frees, measured before and after, and the usage target.

disk-quarantine reports, for every filesystem it cleans (and the quarantine's), the free
space df shows before and after and what the moved files account for now and at the purge;
--target-usage-percent is checked here once the files moved.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import Context, Failed, human_bytes


def usage_percent(text: str) -> float:
    """argparse type of --target-usage-percent: a percentage of the filesystem in use, 1..99."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage (like 90)") from None
    if not math.isfinite(value) or not 1 <= value <= 99:
        raise ValueError(f"{text!r} must be between 1 and 99 (percent of the filesystem in use)")
    return value


@dataclass(frozen=True)
class Usage:
    """A filesystem's space as df shows it (`free` is what unprivileged users may still use)."""

    free: int
    used_percent: float
    block_size: int


def used_percent(blocks: int, blocks_free: int, blocks_available: int) -> float:
    """df's Use%: used / (used + available to users); root's reserve counts as neither."""
    used = blocks - blocks_free
    total = used + blocks_available
    return 100.0 * used / total if total > 0 else 0.0


def filesystem_usage(path: Path) -> Usage | None:
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return Usage(
        free=info.f_bavail * info.f_frsize,
        used_percent=used_percent(info.f_blocks, info.f_bfree, info.f_bavail),
        block_size=info.f_bsize,
    )


@dataclass
class Filesystem:
    """A filesystem the run touches: the folders on it, and what the run did to its space."""

    paths: list[str]
    cleaned: bool = False  # holds a --temp-dir or --log-dir
    holds_quarantine: bool = False
    before: Usage | None = None
    after: Usage | None = None
    bytes_freed: int = 0  # by file sizes: files moved off it, less copies stored on it
    bytes_freed_at_purge: int = 0  # quarantined copies stored on it

    @property
    def name(self) -> str:
        paths = ", ".join(self.paths)
        return f"{paths} and the quarantine" if self.holds_quarantine and self.cleaned else paths

    def summary(self) -> dict[str, Any]:
        before, after = self.before, self.after
        return {
            "paths": self.paths,
            "cleaned": self.cleaned,
            "quarantine": self.holds_quarantine,
            "free_before": before.free if before else None,
            "free_after": after.free if after else None,
            "freed_now_measured": after.free - before.free if before and after else None,
            "used_percent_before": round(before.used_percent, 2) if before else None,
            "used_percent_after": round(after.used_percent, 2) if after else None,
            "bytes_freed": self.bytes_freed,
            "bytes_freed_at_purge": self.bytes_freed_at_purge,
        }


def measure_filesystems(ctx: Context, tops: list[str], quarantine: str) -> dict[int, Filesystem]:
    """The filesystems of the cleaned folders and of the quarantine, by device."""
    found: dict[int, Filesystem] = {}
    for top in tops:
        fs = found.setdefault(os.stat(ctx.path(top)).st_dev, Filesystem([]))
        fs.cleaned = True
        if top not in fs.paths:
            fs.paths.append(top)
    q_device, q_existing = device_of_existing(ctx.path(quarantine))
    fs = found.setdefault(q_device, Filesystem([quarantine]))
    fs.holds_quarantine = True
    for current in found.values():
        path = ctx.path(current.paths[0]) if current.cleaned else q_existing
        current.before = filesystem_usage(path)
    return found


def device_of_existing(path: Path) -> tuple[int, Path]:
    current = path
    while not current.exists():
        current = current.parent
    return os.stat(current).st_dev, current


def report_filesystem(ctx: Context, fs: Filesystem) -> None:
    """One line: free space measured before and after (other writers count too), and what the
    moved files account for now and at the purge."""
    if fs.before is None or fs.after is None:
        ctx.line(f"filesystem of {fs.name}: its free space could not be read")
        return
    change = fs.after.free - fs.before.free
    measured = (
        f"{human_bytes(fs.before.free)} free before, {human_bytes(fs.after.free)} after "
        f"({'+' if change >= 0 else '-'}{human_bytes(abs(change))})"
    )
    if not fs.cleaned:
        ctx.line(
            f"quarantine's filesystem ({fs.name}): {measured}, {fs.after.used_percent:.1f}% "
            f"used; the batch's {human_bytes(fs.bytes_freed_at_purge)} come back when it is "
            f"purged"
        )
        return
    ctx.line(
        f"filesystem of {fs.name}: {measured}; {fs.before.used_percent:.1f}% used before, "
        f"{fs.after.used_percent:.1f}% after; the moved files gave back "
        f"{human_bytes(max(fs.bytes_freed, 0))} now, {human_bytes(fs.bytes_freed_at_purge)} "
        f"more come back when the batch is purged"
    )


def check_target(
    ctx: Context, filesystems: dict[int, Filesystem], target: float | None, prefix: str
) -> None:
    """Post-check of --target-usage-percent: every cleaned filesystem is at most that full."""
    if target is None:
        return
    cleaned = [fs for fs in filesystems.values() if fs.cleaned]
    if any(fs.after and fs.after.used_percent > target for fs in cleaned):
        # Some filesystems (btrfs) count freed space only once it is committed: ask again.
        os.sync()
        for fs in cleaned:
            fs.after = filesystem_usage(ctx.path(fs.paths[0]))
    for fs in cleaned:
        if fs.after is None:
            raise Failed(f"the free space of the filesystem of {fs.name} could not be read")
        if fs.after.used_percent > target:
            kept = " (the files stay in the quarantine for disk-restore)" if not prefix else ""
            raise Failed(
                f"{prefix}the filesystem of {fs.name} is {fs.after.used_percent:.1f}% used, "
                f"above the target of {target:g}%{kept}"
            )
        ctx.line(
            f"ok: the filesystem of {fs.name} is {fs.after.used_percent:.1f}% used, at most "
            f"the target of {target:g}%"
        )
