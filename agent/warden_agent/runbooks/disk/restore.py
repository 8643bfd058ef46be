"""disk-restore: put every file of a quarantine batch back exactly as it was.

Each copy is checked against the manifest's SHA-256, put back without replacing a file that
is at its path now (an identical one counts as restored), with its mode, owner and times;
missing folders are recreated as they were. The post-check reads every restored file again.
"""

from __future__ import annotations

import argparse
import os
import stat
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    Context,
    Failed,
    Refused,
    count_files,
    human_bytes,
    iso_from_ns,
    now_iso,
)
from .compression import gunzip_sha256_at, gunzip_verified
from .files import (
    DIR_FLAGS,
    FileProblem,
    PathTaken,
    apply_metadata,
    copy_verified,
    move_without_replacing,
    open_for_reading,
    opened_dir,
    sha256_at,
    sha256_fd,
)
from .manifest import (
    FILES,
    GZIP,
    GZIPPED,
    PLANNED,
    QUARANTINED,
    RESTORED,
    SKIPPED,
    Manifest,
    batch_id,
    quarantine_lock,
    remove_empty_folders,
    stored_copy,
)


@dataclass
class RestoreTally:
    """What a restore run came to, file by file."""

    restored: list[str] = field(default_factory=list)
    in_place: list[str] = field(default_factory=list)  # identical file already there
    conflicts: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # path, why
    created_dirs: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)


def disk_restore(args: argparse.Namespace, ctx: Context) -> str:
    batch = batch_id(args)
    quarantine = args.quarantine
    ctx.out.details.update(batch=batch, quarantine=quarantine)
    q_real = ctx.path(quarantine)
    batch_dir = q_real / batch
    if q_real.is_symlink() or batch_dir.is_symlink():
        raise Refused(f"quarantine {quarantine} or its batch {batch} is a symlink")
    manifest = Manifest.load(batch_dir) if batch_dir.is_dir() else None
    if manifest is None:
        ctx.line(f"nothing to do: batch {batch} is not in {quarantine} (no file was quarantined)")
        ctx.out.details.update(files_restored=0)
        return NOTHING_TO_DO
    pending = [e for e in manifest.files if e["state"] in (PLANNED, QUARANTINED)]
    if not pending:
        ctx.line(f"nothing to do: every file of batch {batch} is already restored")
        ctx.out.details.update(files_restored=0)
        return NOTHING_TO_DO
    if ctx.dry_run:
        return _restore_dry_run(ctx, batch_dir, manifest, pending)
    with quarantine_lock(q_real):
        return _restore_locked(ctx, batch, batch_dir, manifest, pending)


def _restore_dry_run(
    ctx: Context, batch_dir: Path, manifest: Manifest, pending: list[dict[str, Any]]
) -> str:
    count = 0
    for entry in pending:
        found = stored_copy(batch_dir, entry)
        original = ctx.path(entry["path"])
        if found is None:
            ctx.line(f"would skip {entry['path']}: not in the quarantine")
        elif os.path.lexists(original):
            ctx.line(f"would refuse {entry['path']}: a file is at that path now (unless identical)")
        else:
            parent = original.parent
            if not parent.exists():
                ctx.line(f"would recreate folder {os.path.dirname(entry['path'])}")
            how = ", decompressed and verified" if found[1] == GZIPPED else ""
            ctx.line(
                f"would restore {entry['path']} ({human_bytes(entry['size'])}, mode "
                f"{entry['mode']}, owner {entry['uid']}:{entry['gid']}, modified "
                f"{iso_from_ns(entry['mtime_ns'])}{how})"
            )
            count += 1
    ctx.out.details.update(files_to_restore=count)
    return DRY_RUN


def _restore_locked(
    ctx: Context, batch: str, batch_dir: Path, manifest: Manifest, pending: list[dict[str, Any]]
) -> str:
    tally = RestoreTally()
    directories = manifest.data.get("directories", {})
    for entry in pending:
        try:
            outcome = _restore_one(ctx, batch_dir, entry, directories, tally)
        except FileProblem as why:
            tally.problems.append((entry["path"], str(why)))
            ctx.line(f"could not restore {entry['path']}: {why}")
            continue
        except OSError as why:
            tally.problems.append((entry["path"], str(why.strerror or why)))
            ctx.line(f"could not restore {entry['path']}: {why.strerror or why}")
            continue
        ctx.line(outcome)
        manifest.save_soon()

    # Recreated folders get their recorded times last (adding files changed them), deepest first.
    for folder, meta in sorted(tally.created_dirs, key=lambda item: -item[0].count("/")):
        if meta is not None:
            with suppress(OSError):
                os.utime(
                    ctx.path(folder),
                    ns=(int(meta["atime_ns"]), int(meta["mtime_ns"])),
                    follow_symlinks=False,
                )
    for tree in (FILES, GZIP):
        remove_empty_folders(batch_dir / tree)
    left = [e for e in manifest.files if e["state"] in (PLANNED, QUARANTINED)]
    manifest.data["status"] = RESTORED if not left else "partly restored"
    manifest.save()
    ctx.out.details.update(
        files_restored=len(tally.restored),
        conflicts=tally.conflicts,
        files_failed=len(tally.problems),
    )
    ctx.line(f"restored {count_files(len(tally.restored))} of batch {batch}")

    # Post-check: every restored file is back byte for byte with its mode, owner and times.
    wrong = [path for path in tally.restored if not _restored_exactly(ctx, manifest, path)]
    if wrong:
        raise Failed(f"{count_files(len(wrong))} restored but differ from the manifest: {wrong[0]}")
    if tally.conflicts:
        raise Failed(
            f"{count_files(len(tally.conflicts))} not restored because a different file is at the "
            f"original path now: {', '.join(tally.conflicts)}"
        )
    if tally.problems:
        path, why = tally.problems[0]
        raise Failed(f"{count_files(len(tally.problems))} could not be restored: {path}: {why}")
    return DONE if tally.restored or tally.in_place else NOTHING_TO_DO


def _restore_one(
    ctx: Context,
    batch_dir: Path,
    entry: dict[str, Any],
    directories: dict[str, Any],
    tally: RestoreTally,
) -> str:
    path = entry["path"]
    confirmed = entry["state"] == QUARANTINED
    found = stored_copy(batch_dir, entry)
    if found is None:
        if confirmed:
            raise FileProblem("its quarantined copy is missing")
        entry["state"] = SKIPPED
        return f"nothing to restore for {path}: it was never moved"
    stored, form = found

    with opened_dir(stored.parent) as stored_fd:
        if form == GZIPPED:
            # Checked as it is decompressed (gunzip_verified). A plan has no SHA-256 yet: then
            # the content is what the copy decompresses to (gzip's own CRC-32 checks it).
            expected = entry.get("sha256") or gunzip_sha256_at(stored_fd, stored.name)
        else:
            expected = sha256_at(stored_fd, stored.name)
            if entry.get("sha256") and expected != entry["sha256"]:
                raise FileProblem("its quarantined copy changed (SHA-256 differs); left there")
        parent_fd = _open_original_parent(ctx, entry, directories, tally)
        try:
            name = os.path.basename(path)
            try:
                there = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                there = None
            if there is not None:
                same = stat.S_ISREG(there.st_mode) and sha256_at(parent_fd, name) == expected
                if not same:
                    tally.conflicts.append(path)
                    return f"refused to overwrite {path}: a different file is there now"
                # The move never finished (or the file came back): the copy is redundant.
                os.unlink(stored.name, dir_fd=stored_fd)
                entry["state"] = RESTORED if confirmed else SKIPPED
                tally.in_place.append(path)
                return f"{path} is already in place with the same content; dropped the copy"
            try:
                method = _put_back(stored_fd, stored.name, form, parent_fd, name, entry, expected)
            except PathTaken:
                tally.conflicts.append(path)
                return f"refused to overwrite {path}: a different file appeared there"
            os.fsync(parent_fd)
        finally:
            os.close(parent_fd)
    entry["state"] = RESTORED
    entry["restored_at"] = now_iso()
    tally.restored.append(path)
    return f"restored {path} ({human_bytes(entry['size'])}, {method})"


def _put_back(
    stored_fd: int,
    stored_name: str,
    form: str,
    parent_fd: int,
    name: str,
    entry: dict[str, Any],
    expected_sha: str,
) -> str:
    """Put a stored copy back at parent/name with its metadata; never replaces a file there."""
    if form == GZIPPED:
        gunzip_verified(stored_fd, stored_name, parent_fd, name, entry, expected_sha)
        os.unlink(stored_name, dir_fd=stored_fd)
        return "decompressed, SHA-256 verified"
    if os.fstat(stored_fd).st_dev == os.fstat(parent_fd).st_dev:
        move_without_replacing(stored_fd, stored_name, parent_fd, name)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent_fd)
        try:
            apply_metadata(fd, entry)
        finally:
            os.close(fd)
        return "rename"
    copy_verified(stored_fd, stored_name, parent_fd, name, entry)
    os.unlink(stored_name, dir_fd=stored_fd)
    return "copy"


def _open_original_parent(
    ctx: Context, entry: dict[str, Any], directories: dict[str, Any], tally: RestoreTally
) -> int:
    """Open the file's folder, recreating missing folders below its top with their metadata."""
    top = entry.get("top") or os.path.dirname(entry["path"])
    top_real = ctx.path(top)
    if not top_real.exists():
        top_real.mkdir(parents=True, mode=0o755)
        _adopt_metadata(top_real, directories.get(top))
        tally.created_dirs.append((top, directories.get(top)))
    fd = os.open(top_real, DIR_FLAGS)
    below = os.path.relpath(os.path.dirname(entry["path"]), top)
    parts = [] if below == "." else below.split("/")
    logical = top.rstrip("/")
    for name in parts:
        logical = f"{logical}/{name}"
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            meta = directories.get(logical)
            os.mkdir(name, 0o700, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            if meta is not None:
                os.fchown(child, int(meta["uid"]), int(meta["gid"]))
                os.fchmod(child, int(meta["mode"], 8))
            else:
                os.fchmod(child, 0o755)
            tally.created_dirs.append((logical, meta))
            ctx.line(f"recreated folder {logical}")
        except OSError as error:
            os.close(fd)
            raise FileProblem(f"{logical} is not a plain folder ({error.strerror})") from error
        os.close(fd)
        fd = child
    return fd


def _adopt_metadata(path: Path, meta: dict[str, Any] | None) -> None:
    if meta is not None:
        os.chown(path, int(meta["uid"]), int(meta["gid"]))
        os.chmod(path, int(meta["mode"], 8))


def _restored_exactly(ctx: Context, manifest: Manifest, path: str) -> bool:
    entry = next(e for e in manifest.files if e["path"] == path)
    real = ctx.path(path)
    with opened_dir(real.parent) as parent_fd:
        fd = open_for_reading(real.name, parent_fd)
        try:
            st = os.fstat(fd)
            same_bytes = entry.get("sha256") is None or sha256_fd(fd) == entry["sha256"]
        finally:
            os.close(fd)
    return (
        same_bytes
        and st.st_size == entry["size"]
        and f"{stat.S_IMODE(st.st_mode):04o}" == entry["mode"]
        and st.st_uid == entry["uid"]
        and st.st_gid == entry["gid"]
        and st.st_mtime_ns == entry["mtime_ns"]
    )
