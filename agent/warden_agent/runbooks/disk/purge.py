"""disk-purge: delete the quarantine batches older than the retention.

A batch's age is its manifest's created_at (the folder's modification time when there is no
readable manifest); what is not a batch (a name that is not a word, a symlink) is left alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from contextlib import suppress
from pathlib import Path

from ..common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    WORD,
    Context,
    Failed,
    Refused,
    UsageError,
    fsync_dir,
    human_bytes,
    parse_iso,
)
from .manifest import LOCK, Manifest, quarantine_lock


def disk_purge(args: argparse.Namespace, ctx: Context) -> str:
    if args.retention_days < 1:
        raise UsageError("--retention-days must be at least 1")
    quarantine = args.quarantine
    q_real = ctx.path(quarantine)
    ctx.out.details.update(quarantine=quarantine, retention_days=args.retention_days)
    if q_real.is_symlink() or (q_real.exists() and not q_real.is_dir()):
        raise Refused(f"quarantine {quarantine} is not a plain folder")
    if not q_real.exists():
        ctx.line(f"nothing to do: {quarantine} does not exist")
        ctx.out.details.update(batches_deleted=[])
        return NOTHING_TO_DO

    cutoff = time.time() - args.retention_days * 86400
    expired: list[tuple[str, Path, int]] = []
    for name in sorted(os.listdir(q_real)):
        batch_dir = q_real / name
        if name == LOCK or batch_dir.is_symlink() or not batch_dir.is_dir():
            continue
        if not WORD.match(name):
            ctx.line(f"left alone: {name} in {quarantine} is not a batch")
            continue
        created = _batch_created(batch_dir)
        if created < cutoff:
            expired.append((name, batch_dir, _tree_size(batch_dir)))

    if not expired:
        ctx.line(f"nothing to do: no batch older than {args.retention_days} days")
        ctx.out.details.update(batches_deleted=[])
        return NOTHING_TO_DO
    if ctx.dry_run:
        for name, _batch_dir, size in expired:
            ctx.line(f"would delete batch {name} ({human_bytes(size)})")
        ctx.out.details.update(batches_to_delete=[name for name, _, _ in expired])
        return DRY_RUN

    freed = 0
    with quarantine_lock(q_real):
        for name, batch_dir, size in expired:
            shutil.rmtree(batch_dir)
            freed += size
            ctx.line(f"deleted batch {name} ({human_bytes(size)})")
    fsync_dir(q_real)
    left = [name for name, batch_dir, _ in expired if os.path.lexists(batch_dir)]
    ctx.out.details.update(batches_deleted=[name for name, _, _ in expired], bytes_freed=freed)
    if left:
        raise Failed(f"batches still present after deleting: {', '.join(left)}")
    return DONE


def _batch_created(batch_dir: Path) -> float:
    try:
        manifest = Manifest.load(batch_dir)
    except Refused:
        manifest = None
    if manifest is not None:
        with suppress(KeyError, ValueError, TypeError):
            return parse_iso(manifest.data["created_at"]).timestamp()
    return os.lstat(batch_dir).st_mtime


def _tree_size(folder: Path) -> int:
    total = 0
    for current, _dirs, files in os.walk(folder):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(current, name)).st_size
    return total
