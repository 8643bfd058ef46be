"""Moving one found file into a quarantine batch: gzip-compressed when that pays, else as is.

The file must be unchanged since it was found (same inode, size and modification time) until
its verified copy has its name in the batch; only then is the original removed. A file that
changed, or went away, is left alone (FileChanged).
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ..common import human_bytes, make_private_dirs
from .compression import MAGIC_BYTES, Budget, NotCompressed, as_is_reason, gzip_verified
from .files import (
    FileChanged,
    FileProblem,
    copy_verified,
    metadata,
    open_chain,
    open_for_reading,
    opened_dir,
    partial_name,
    place_partial,
    sha256_at,
    unchanged,
)
from .manifest import FILES, GZIP, GZIPPED, PLAIN
from .scan import Candidate


@dataclass
class Moved:
    """How a file went into the batch, and where its copy is."""

    method: str  # rename, copy or gzip
    sha256: str  # of the original bytes
    stored: str  # the copy, relative to the batch folder
    form: str  # PLAIN or GZIPPED
    stored_size: int
    as_is: str | None = None  # why a file was not compressed


def move_one(
    top_fd: int, candidate: Candidate, batch_dir: Path, budget: Budget, block_size: int
) -> Moved:
    parent_fd = open_chain(top_fd, candidate.parts[:-1], candidate.st.st_dev)
    try:
        name = candidate.parts[-1]
        try:
            now = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError as error:
            raise FileChanged("is gone") from error
        if not unchanged(now, candidate.st):
            raise FileChanged("changed since it was found")
        relative = candidate.logical.lstrip("/")
        for tree in (FILES, GZIP):
            if os.path.lexists(batch_dir / tree / relative):
                raise FileProblem(f"{batch_dir / tree / relative} is already in the quarantine")
        src = open_for_reading(name, parent_fd)
        try:
            if not unchanged(os.fstat(src), now):
                raise FileChanged("changed since it was found")
            head = os.pread(src, MAGIC_BYTES, 0)
            reason = as_is_reason(name, head, now.st_size, block_size)
            if reason is None and not budget.left():
                reason = budget.out_of_time
            if reason is None:
                try:
                    return _store_gzipped(parent_fd, name, src, now, batch_dir, relative, budget)
                except NotCompressed as why:
                    reason = str(why)
        finally:
            os.close(src)
        stored = _store_as_is(parent_fd, name, now, batch_dir, relative)
        stored.as_is = reason
        return stored
    finally:
        os.close(parent_fd)


def _store_gzipped(
    parent_fd: int,
    name: str,
    src: int,
    now: os.stat_result,
    batch_dir: Path,
    relative: str,
    budget: Budget,
) -> Moved:
    dest = batch_dir / GZIP / relative
    make_private_dirs(dest.parent)
    with opened_dir(dest.parent) as dest_fd:
        sha, stored_size = gzip_verified(src, dest_fd, dest.name, budget)
        try:
            try:
                again = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                again = None
            if again is None or not unchanged(again, now):
                raise FileChanged("changed while it was compressed")
        except BaseException:
            with suppress(OSError):
                os.unlink(partial_name(dest.name), dir_fd=dest_fd)
            raise
        place_partial(dest_fd, dest.name)
        try:
            os.unlink(name, dir_fd=parent_fd)
        except BaseException:
            # The original stays where it is, so no copy of it may stay in the quarantine.
            with suppress(OSError):
                os.unlink(dest.name, dir_fd=dest_fd)
            raise
        os.fsync(parent_fd)
    return Moved("gzip", sha, f"{GZIP}/{relative}", GZIPPED, stored_size)


def _store_as_is(
    parent_fd: int, name: str, now: os.stat_result, batch_dir: Path, relative: str
) -> Moved:
    stored = f"{FILES}/{relative}"
    dest = batch_dir / stored
    make_private_dirs(dest.parent)
    with opened_dir(dest.parent) as dest_fd:
        if os.fstat(dest_fd).st_dev == now.st_dev:
            os.rename(name, dest.name, src_dir_fd=parent_fd, dst_dir_fd=dest_fd)
            os.fsync(dest_fd)
            os.fsync(parent_fd)
            return Moved("rename", sha256_at(dest_fd, dest.name), stored, PLAIN, now.st_size)
        sha = copy_verified(parent_fd, name, dest_fd, dest.name, metadata(now))
        again = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not unchanged(again, now):
            os.unlink(dest.name, dir_fd=dest_fd)
            raise FileChanged("changed while it was copied")
        os.unlink(name, dir_fd=parent_fd)
        os.fsync(parent_fd)
        return Moved("copy", sha, stored, PLAIN, now.st_size)


def moved_line(path: str, size: int, moved: Moved, same_fs: bool) -> str:
    if moved.form == GZIPPED:
        smaller = 1 - moved.stored_size / size
        how = f"gzip to {human_bytes(moved.stored_size)}, {smaller:.0%} smaller"
    elif same_fs:
        how = (
            f"{moved.method}; as is, {moved.as_is or 'not compressed'}: frees nothing until "
            f"the batch is purged"
        )
    else:
        how = moved.method
    return f"moved {path} ({human_bytes(size)}, {how}) sha256 {moved.sha256}"
