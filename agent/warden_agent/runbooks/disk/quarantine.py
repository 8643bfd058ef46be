"""disk-quarantine: move old temp files and old rotated logs into a quarantine batch.

The pre-checks refuse folders that are not plain folders and a quarantine that overlaps them.
The plan (every file to move, and the folders above them) is written to the manifest and
fsynced before the first file moves, so disk-restore can always find what was moved; then the
files move largest first, and the post-checks confirm every moved file is intact in the
batch and gone from where it was, and (with --target-usage-percent) that each cleaned
filesystem is at most that full.
"""

from __future__ import annotations

import argparse
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    Context,
    Failed,
    Refused,
    UsageError,
    count_files,
    fsync_dir,
    human_bytes,
    iso_from_ns,
    make_private_dirs,
    now_iso,
)
from .compression import (
    COMPRESS_SECONDS_VARIABLE,
    MAGIC_BYTES,
    MIN_SAVING,
    Budget,
    as_is_reason,
    compress_budget,
)
from .files import (
    DIR_FLAGS,
    FileChanged,
    FileProblem,
    metadata,
    open_chain,
    open_for_reading,
    opened_dir,
)
from .manifest import (
    FILES,
    GZIP,
    GZIPPED,
    MANIFEST,
    MANIFEST_FORMAT,
    PLANNED,
    QUARANTINED,
    SKIPPED,
    Manifest,
    batch_id,
    quarantine_lock,
    remove_empty_folders,
)
from .moving import Moved, move_one, moved_line
from .scan import Candidate, Scan, find_candidates, is_within
from .space import (
    Filesystem,
    check_target,
    device_of_existing,
    filesystem_usage,
    measure_filesystems,
    report_filesystem,
)

# A planned file with the manifest entry that records it.
Planned = tuple[Candidate, dict[str, Any]]


@dataclass
class MoveTally:
    """What the moves of one run came to."""

    moved: int = 0
    compressed: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_moved: int = 0
    bytes_stored: int = 0

    def add(self, size: int, result: Moved) -> None:
        self.moved += 1
        self.compressed += result.form == GZIPPED
        self.bytes_moved += size
        self.bytes_stored += result.stored_size


def disk_quarantine(args: argparse.Namespace, ctx: Context) -> str:
    started = time.monotonic()
    batch = batch_id(args)
    budget = compress_budget(started, os.environ.get(COMPRESS_SECONDS_VARIABLE))
    tops = [(top, "temp") for top in args.temp_dir or []]
    tops += [(top, "log") for top in args.log_dir or []]
    if not tops:
        raise UsageError("give at least one --temp-dir or --log-dir")
    if args.older_than_days < 1:
        raise UsageError("--older-than-days must be at least 1")
    # Optional (None: no check); the CLI parses it with space.usage_percent.
    target: float | None = getattr(args, "target_usage_percent", None)
    quarantine = args.quarantine
    ctx.out.details.update(batch=batch, quarantine=quarantine)
    if target is not None:
        ctx.out.details.update(target_usage_percent=target)

    q_real = _checked_folders(ctx, tops, quarantine)
    candidates, scan = find_candidates(ctx, tops, q_real, args.older_than_days)
    folders = [top for top, _ in tops]
    if not candidates:
        return _nothing_old_enough(ctx, folders, quarantine, args.older_than_days, target)
    if ctx.dry_run:
        return _quarantine_dry_run(ctx, quarantine, batch, candidates, folders, target)

    make_private_dirs(q_real)
    if stat.S_IMODE(os.stat(q_real).st_mode) != 0o700:
        os.chmod(q_real, 0o700)
    filesystems = measure_filesystems(ctx, folders, quarantine)
    with quarantine_lock(q_real):
        return _quarantine_locked(
            ctx, batch, quarantine, q_real, candidates, scan, filesystems, target, budget
        )


def _checked_folders(ctx: Context, tops: list[tuple[str, str]], quarantine: str) -> Path:
    """Pre-checks: every folder is a real folder, and the quarantine is not inside one.

    Returns where the quarantine is on this host (it may not exist yet).
    """
    for top, _kind in tops:
        real = ctx.path(top)
        if not real.exists() and not real.is_symlink():
            raise Refused(f"{top} does not exist")
        if real.is_symlink() or not real.is_dir():
            raise Refused(f"{top} is not a plain folder (a symlink or a file)")
        if is_within(quarantine, top) or is_within(top, quarantine):
            raise Refused(f"the quarantine {quarantine} and {top} overlap")
    q_real = ctx.path(quarantine)
    if q_real.is_symlink() or (q_real.exists() and not q_real.is_dir()):
        raise Refused(f"quarantine {quarantine} is not a plain folder")
    return q_real


def _nothing_old_enough(
    ctx: Context, folders: list[str], quarantine: str, days: int, target: float | None
) -> str:
    ctx.line(f"nothing to do: no file older than {days} days to quarantine")
    ctx.out.details.update(files_moved=0, bytes_moved=0, bytes_freed=0)
    if target is not None and not ctx.dry_run:
        filesystems = measure_filesystems(ctx, folders, quarantine)
        for fs in filesystems.values():
            fs.after = fs.before
        check_target(ctx, filesystems, target, "nothing old enough to quarantine, and ")
    return NOTHING_TO_DO


def _quarantine_dry_run(
    ctx: Context,
    quarantine: str,
    batch: str,
    candidates: list[Candidate],
    folders: list[str],
    target: float | None,
) -> str:
    filesystems = measure_filesystems(ctx, folders, quarantine)
    q_device, _ = device_of_existing(ctx.path(quarantine))
    batch_logical = f"{quarantine.rstrip('/')}/{batch}"
    total = to_compress = 0
    for candidate in candidates:
        before = filesystems[candidate.st.st_dev].before
        block_size = before.block_size if before else 4096
        head = _peek(ctx, candidate)
        reason = as_is_reason(candidate.parts[-1], head, candidate.st.st_size, block_size)
        same_fs = candidate.st.st_dev == q_device
        as_is = "rename" if same_fs else "copy, verify, delete"
        if reason is None:
            how = f"gzip if that saves {MIN_SAVING:.0%}, else as is: {as_is}"
            to_compress += 1
        elif same_fs:
            how = f"as is, {reason}: {as_is}; frees nothing until the batch is purged"
        else:
            how = f"as is, {reason}: {as_is}"
        ctx.line(
            f"would move {candidate.logical} ({human_bytes(candidate.st.st_size)}, "
            f"modified {iso_from_ns(candidate.st.st_mtime_ns)}) into {batch_logical} ({how})"
        )
        total += candidate.st.st_size
    ctx.line(f"would quarantine {count_files(len(candidates))}, {human_bytes(total)}")
    for fs in filesystems.values():
        if fs.cleaned and fs.before:
            ctx.line(
                f"filesystem of {fs.name}: {human_bytes(fs.before.free)} free, "
                f"{fs.before.used_percent:.1f}% used"
            )
    if target is not None:
        ctx.line(f"would check: every cleaned filesystem at most {target:g}% used afterwards")
    ctx.out.details.update(
        files_to_move=len(candidates),
        bytes_to_move=total,
        files_to_try_compressing=to_compress,
        filesystems=[fs.summary() for fs in filesystems.values()],
    )
    return DRY_RUN


def _peek(ctx: Context, candidate: Candidate) -> bytes:
    """The first bytes of a candidate (read-only, O_NOATIME, no symlink followed)."""
    try:
        with opened_dir(ctx.path(candidate.top)) as top_fd:
            parent_fd = open_chain(top_fd, candidate.parts[:-1], candidate.st.st_dev)
            try:
                fd = open_for_reading(candidate.parts[-1], parent_fd)
                try:
                    return os.pread(fd, MAGIC_BYTES, 0)
                finally:
                    os.close(fd)
            finally:
                os.close(parent_fd)
    except (OSError, FileProblem):
        return b""


def _quarantine_locked(
    ctx: Context,
    batch: str,
    quarantine: str,
    q_real: Path,
    candidates: list[Candidate],
    scan: Scan,
    filesystems: dict[int, Filesystem],
    target: float | None,
    budget: Budget,
) -> str:
    batch_dir = q_real / batch
    make_private_dirs(batch_dir / FILES)
    manifest = Manifest.load(batch_dir) or Manifest.new(batch_dir, batch, quarantine)
    planned = _write_plan(ctx, manifest, candidates, scan)
    fsync_dir(q_real)
    ctx.line(f"batch {batch}: manifest {quarantine.rstrip('/')}/{batch}/{MANIFEST}")

    q_device = os.stat(q_real).st_dev
    tally = _move_planned(ctx, manifest, planned, filesystems, q_device, budget)
    _report_moves(ctx, filesystems, tally, q_real)

    # Post-check: each moved file is in the quarantine and gone from where it was.
    missing = _not_in_quarantine(ctx, batch_dir, planned)
    if missing:
        raise Failed(
            f"{count_files(len(missing))} moved but not intact in the quarantine: {missing[0]}"
        )
    if tally.failed:
        raise Failed(
            f"{tally.failed} of {count_files(len(planned))} could not be moved (see above)"
        )
    check_target(ctx, filesystems, target, "")
    if tally.moved == 0:
        ctx.line("nothing was moved: every file changed or went away first")
        return NOTHING_TO_DO
    return DONE


def _write_plan(
    ctx: Context, manifest: Manifest, candidates: list[Candidate], scan: Scan
) -> list[Planned]:
    """Record every file to move (and the folders above them) in the manifest, on disk.

    The plan goes to disk (fsynced) before the first file moves. How each file is stored is
    only known once it moved: restore looks for its copy in both trees until then.
    """
    manifest.data["format"] = MANIFEST_FORMAT
    by_path = {entry["path"]: entry for entry in manifest.files}
    planned: list[Planned] = []
    for candidate in candidates:
        old = by_path.get(candidate.logical)
        if old is not None and old["state"] in (PLANNED, QUARANTINED):
            ctx.line(f"left alone: {candidate.logical} is already in this batch")
            continue
        entry = {
            "path": candidate.logical,
            "top": candidate.top,
            "stored": None,
            "stored_form": None,
            "stored_size": None,
            "size": candidate.st.st_size,
            "sha256": None,
            **metadata(candidate.st),
            "state": PLANNED,
        }
        if old is not None:
            manifest.files.remove(old)
        manifest.files.append(entry)
        planned.append((candidate, entry))
    # The folders above each file, so disk-restore can recreate them as they were.
    for candidate, _entry in planned:
        folder = candidate.top
        for name in ("", *candidate.parts[:-1]):
            folder = f"{folder.rstrip('/')}/{name}" if name else folder
            if folder in scan.directories:
                manifest.data["directories"].setdefault(folder, scan.directories[folder])
    manifest.data["status"] = "moving"
    manifest.save()
    return planned


def _move_planned(
    ctx: Context,
    manifest: Manifest,
    planned: list[Planned],
    filesystems: dict[int, Filesystem],
    q_device: int,
    budget: Budget,
) -> MoveTally:
    """Move the planned files, largest first, recording each outcome in the manifest."""
    batch_dir = manifest.path.parent
    store = filesystems[q_device]
    tally = MoveTally()
    top_fds: dict[str, int] = {}
    try:
        # Largest first: within the time for compressing, they give back the most.
        for candidate, entry in sorted(planned, key=lambda pair: -pair[0].st.st_size):
            if candidate.top not in top_fds:
                top_fds[candidate.top] = os.open(ctx.path(candidate.top), DIR_FLAGS)
            source = filesystems[candidate.st.st_dev]
            block_size = source.before.block_size if source.before else 4096
            try:
                result = move_one(top_fds[candidate.top], candidate, batch_dir, budget, block_size)
            except FileChanged as why:
                entry["state"] = SKIPPED
                entry["note"] = str(why)
                tally.skipped += 1
                ctx.line(f"left alone: {candidate.logical} {why}")
            except (FileProblem, OSError) as why:
                entry["error"] = str(why)
                tally.failed += 1
                ctx.line(f"could not move {candidate.logical}: {why}")
            else:
                entry.update(
                    state=QUARANTINED,
                    sha256=result.sha256,
                    method=result.method,
                    stored=result.stored,
                    stored_form=result.form,
                    stored_size=result.stored_size,
                    moved_at=now_iso(),
                )
                tally.add(entry["size"], result)
                # The file left its filesystem; its copy takes stored_size on the quarantine's
                # (the same one when renamed or compressed in place) until the purge.
                source.bytes_freed += entry["size"]
                store.bytes_freed -= result.stored_size
                store.bytes_freed_at_purge += result.stored_size
                _announce_out_of_time(ctx, budget, result)
                same_fs = candidate.st.st_dev == q_device
                ctx.line(moved_line(candidate.logical, entry["size"], result, same_fs))
            manifest.save_soon()
    finally:
        for fd in top_fds.values():
            os.close(fd)
        manifest.data["status"] = QUARANTINED
        manifest.save()
        for tree in (FILES, GZIP):
            remove_empty_folders(batch_dir / tree)
    return tally


def _announce_out_of_time(ctx: Context, budget: Budget, result: Moved) -> None:
    """Say once that compressing stopped, when the first file is stored as is for that."""
    if result.as_is == budget.out_of_time and not budget.announced:
        budget.announced = True
        ctx.line(
            f"compressing stopped after {budget.seconds:g} s: the remaining files "
            f"are stored as they are"
        )


def _report_moves(
    ctx: Context, filesystems: dict[int, Filesystem], tally: MoveTally, q_real: Path
) -> None:
    """Measure the filesystems again and report what the run freed, now and at the purge."""
    for fs in filesystems.values():
        fs.after = filesystem_usage(ctx.path(fs.paths[0]) if fs.cleaned else q_real)
    cleaned = [fs for fs in filesystems.values() if fs.cleaned]
    freed_now = sum(fs.bytes_freed for fs in cleaned)
    freed_at_purge = sum(fs.bytes_freed_at_purge for fs in cleaned)
    for fs in filesystems.values():
        report_filesystem(ctx, fs)
    ctx.line(
        f"quarantined {count_files(tally.moved)}, {human_bytes(tally.bytes_moved)} "
        f"({tally.compressed} compressed), stored in {human_bytes(tally.bytes_stored)}; the "
        f"cleaned filesystems got {human_bytes(max(freed_now, 0))} back now and get "
        f"{human_bytes(freed_at_purge)} more when the batch is purged (disk-purge, after the "
        f"retention)"
    )
    ctx.out.details.update(
        files_moved=tally.moved,
        files_compressed=tally.compressed,
        files_skipped=tally.skipped,
        files_failed=tally.failed,
        bytes_moved=tally.bytes_moved,
        bytes_stored=tally.bytes_stored,
        bytes_freed=freed_now,
        bytes_freed_at_purge=freed_at_purge,
        filesystems=[fs.summary() for fs in filesystems.values()],
    )


def _not_in_quarantine(ctx: Context, batch_dir: Path, planned: list[Planned]) -> list[str]:
    missing = []
    for candidate, entry in planned:
        if entry["state"] != QUARANTINED:
            continue
        try:
            st = os.lstat(batch_dir / entry["stored"])
        except FileNotFoundError:
            missing.append(entry["path"])
            continue
        try:
            there = os.lstat(ctx.path(entry["path"]))
        except FileNotFoundError:
            there = None
        back = there is not None and (there.st_dev, there.st_ino) == (
            candidate.st.st_dev,
            candidate.st.st_ino,
        )
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry["stored_size"] or back:
            missing.append(entry["path"])
    return missing
