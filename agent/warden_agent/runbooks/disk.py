"""disk-quarantine, disk-restore, disk-purge: free disk space in a way that can be undone.

Old temp files and old rotated logs are moved (never deleted) into a quarantine batch:
QUARANTINE/<batch>/gzip/<original absolute path> gzip-compressed when that saves at least a
tenth, else QUARANTINE/<batch>/files/<original absolute path> as they were. A manifest records
what each file was (size, SHA-256, mode, owner, times) and how it is stored, so disk-restore can
put every one back exactly. Compressing is what frees space at once when the quarantine shares
the filesystem it cleans (the usual host); a file stored as is there frees its space only when
disk-purge deletes the batch after the retention.

Paths are walked through folder file descriptors opened with O_NOFOLLOW, so a folder in a
world-writable /tmp that someone swaps for a symlink while we work is refused, never followed.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import math
import os
import re
import shutil
import stat
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
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
    iso_from_ns,
    make_private_dirs,
    now_iso,
    parse_iso,
    read_json,
    write_json_atomic,
)

# app.log.1, app.log.2.gz, *.gz, *.xz, *.bz2, *.zst, *.old, app.log-20261201 (logrotate's dateext).
ROTATED_LOG_NAME = re.compile(r"(\.\d+|\.(gz|xz|bz2|zst|old)|-\d{8}(\d{2})?|-\d{4}-\d{2}-\d{2})$")

MANIFEST = "manifest.json"
FILES = "files"  # files stored as they were
GZIP = "gzip"  # files stored gzip-compressed (same relative path, no suffix: names never clash)
LOCK = ".lock"
# 2: files may be stored gzip-compressed ("stored_form"); format 1 manifests read the same way.
MANIFEST_FORMAT = 2
# While files move the manifest is rewritten at most this often (and always at the end):
# restore works from the plan written before the first move, so this only keeps it current.
MANIFEST_WRITE_INTERVAL = 1.0
MAX_DEPTH = 64
CHUNK = 1024 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

# Entry states in the manifest.
PLANNED = "planned"  # written before the move; the move may or may not have happened
QUARANTINED = "quarantined"
RESTORED = "restored"
SKIPPED = "skipped"  # never moved (changed, in use, or gone before we got to it)

# How a file is stored in the quarantine.
PLAIN = "plain"
GZIPPED = "gzip"

# Level 1: on a host that is running out of disk, speed matters more than the last few
# percent (on text logs it keeps almost all of the gain of the default level, at twice the speed).
GZIP_LEVEL = 1
# A compressed copy is kept only when it saves at least this fraction of the file.
MIN_SAVING = 0.10
# Data that has not shrunk by MIN_SAVING after this much input is judged incompressible.
JUDGE_AFTER = 8 * CHUNK
# Compressing stops this long after the run started (the agent kills an action after 60 s by
# default): the remaining files are moved as they are. The environment variable can change it
# for hosts whose agent allows actions more (or less) time.
COMPRESS_SECONDS = 30.0
COMPRESS_SECONDS_VARIABLE = "WARDEN_RUNBOOK_COMPRESS_SECONDS"

# Names and leading bytes of files that are compressed already: they are stored as they are.
COMPRESSED_SUFFIXES = {
    ".gz": "gzip",
    ".tgz": "gzip",
    ".xz": "xz",
    ".txz": "xz",
    ".bz2": "bzip2",
    ".tbz": "bzip2",
    ".tbz2": "bzip2",
    ".zst": "zstd",
    ".tzst": "zstd",
}
COMPRESSED_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
# "BZh", the block size 1-9, then a block header (pi) or the end-of-stream mark (sqrt(pi)).
BZIP2_MAGIC = re.compile(rb"BZh[1-9](\x31\x41\x59\x26\x53\x59|\x17\x72\x45\x38\x50\x90)")
MAGIC_BYTES = 10


class FileProblem(Exception):
    """One file could not be handled; the others go on."""


class FileChanged(FileProblem):
    """The file changed or is in use: left alone, which is not a failure."""


class PathTaken(FileProblem):
    """A file appeared at the path a file was to be put at: it is never overwritten."""


class NotCompressed(Exception):
    """Compressing did not pay (or could not be done now): the file is stored as it is."""


@dataclass
class Budget:
    """The run's time for compressing; once it is used up, files are stored as they are."""

    seconds: float
    deadline: float
    announced: bool = False

    def left(self) -> bool:
        return time.monotonic() < self.deadline

    @property
    def out_of_time(self) -> str:
        return f"out of time for compressing ({self.seconds:g} s)"


def compress_budget(started: float, text: str | None) -> Budget:
    """The compressing budget, from $WARDEN_RUNBOOK_COMPRESS_SECONDS (or COMPRESS_SECONDS)."""
    if text is None or text == "":
        seconds = COMPRESS_SECONDS
    else:
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not math.isfinite(seconds) or seconds < 0:
            raise UsageError(f"{COMPRESS_SECONDS_VARIABLE}={text!r} is not a number of seconds")
    return Budget(seconds, started + seconds)


# ---------------------------------------------------------------- shared file helpers


def batch_id(args: argparse.Namespace) -> str:
    batch = args.batch or os.environ.get("WARDEN_EXECUTION_ID", "")
    if not batch:
        raise UsageError("no batch: set WARDEN_EXECUTION_ID or pass --batch ID")
    if not WORD.match(batch):
        raise UsageError(f"batch {batch!r} must be letters, digits, '.', '_' or '-'")
    return batch


def usage_percent(text: str) -> float:
    """argparse type of --target-usage-percent: a percentage of the filesystem in use, 1..99."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage (like 90)") from None
    if not math.isfinite(value) or not 1 <= value <= 99:
        raise ValueError(f"{text!r} must be between 1 and 99 (percent of the filesystem in use)")
    return value


def compression_of(name: str, head: bytes) -> str | None:
    """The format a file is compressed in already, by its name or its first bytes; else None."""
    lowered = name.lower()
    for suffix, kind in COMPRESSED_SUFFIXES.items():
        if lowered.endswith(suffix):
            return kind
    for magic, kind in COMPRESSED_MAGIC:
        if head.startswith(magic):
            return kind
    if BZIP2_MAGIC.match(head):
        return "bzip2"
    return None


def saves_enough(size: int, stored_size: int) -> bool:
    return stored_size <= size * (1 - MIN_SAVING)


def open_for_reading(name: str, dir_fd: int) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0)
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        # O_NOATIME needs ownership or CAP_FOWNER; reading then may update the atime.
        return os.open(name, flags & ~getattr(os, "O_NOATIME", 0), dir_fd=dir_fd)


def sha256_fd(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def sha256_at(dir_fd: int, name: str) -> str:
    fd = open_for_reading(name, dir_fd)
    try:
        return sha256_fd(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def gunzip_chunks(fd: int) -> Iterator[bytes]:
    """The decompressed content of the gzip file fd, at most CHUNK bytes at a time.

    zlib checks the gzip trailer (CRC-32 and length); a damaged, cut short or padded copy
    raises FileProblem.
    """
    unpacker = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
    offset = 0
    try:
        while data := os.pread(fd, CHUNK, offset):
            offset += len(data)
            while True:
                out = unpacker.decompress(data, CHUNK)
                if out:
                    yield out
                data = unpacker.unconsumed_tail
                # A full chunk may leave output inside zlib: ask again until it is drained.
                if unpacker.eof or (not data and len(out) < CHUNK):
                    break
            if unpacker.eof:
                break
    except zlib.error as error:
        raise FileProblem(f"its compressed copy is damaged ({error})") from error
    if not unpacker.eof:
        raise FileProblem("its compressed copy is cut short")
    if unpacker.unused_data or os.pread(fd, 1, offset):
        raise FileProblem("its compressed copy has data after its end")


def gunzip_sha256(fd: int) -> str:
    digest = hashlib.sha256()
    for chunk in gunzip_chunks(fd):
        digest.update(chunk)
    return digest.hexdigest()


def unchanged(now: os.stat_result, before: os.stat_result) -> bool:
    return (
        stat.S_ISREG(now.st_mode)
        and now.st_dev == before.st_dev
        and now.st_ino == before.st_ino
        and now.st_size == before.st_size
        and now.st_mtime_ns == before.st_mtime_ns
    )


def metadata(st: os.stat_result) -> dict[str, Any]:
    return {
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "atime_ns": st.st_atime_ns,
        "mtime_ns": st.st_mtime_ns,
    }


def apply_metadata(fd: int, meta: dict[str, Any]) -> None:
    # chown first (it clears set-uid bits), then the mode, then the times (chown and chmod
    # touch only the ctime, which no one can set).
    os.fchown(fd, int(meta["uid"]), int(meta["gid"]))
    os.fchmod(fd, int(meta["mode"], 8))
    os.utime(fd, ns=(int(meta["atime_ns"]), int(meta["mtime_ns"])))


def partial_name(name: str) -> str:
    return f".{name}.warden-partial"[:255]


def create_partial(dir_fd: int, name: str) -> int:
    """A new, empty partial file for name (a stale one from a crash is replaced)."""
    with suppress(FileNotFoundError):
        os.unlink(partial_name(name), dir_fd=dir_fd)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    return os.open(partial_name(name), flags, 0o600, dir_fd=dir_fd)


def drop_partial(fd: int, dir_fd: int, name: str) -> None:
    os.close(fd)
    with suppress(OSError):
        os.unlink(partial_name(name), dir_fd=dir_fd)


def move_without_replacing(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> None:
    """rename() within one filesystem that never replaces a file already at dst (PathTaken).

    link() fails when the name exists, where rename() would silently replace it; filesystems
    without hard links fall back to a check and a rename.
    """
    try:
        os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    except FileExistsError as error:
        raise PathTaken(f"a file appeared at {dst!r}; left as it is") from error
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        try:
            os.stat(dst, dir_fd=dst_dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            return
        raise PathTaken(f"a file appeared at {dst!r}; left as it is") from error
    os.unlink(src, dir_fd=src_dir_fd)


def place_partial(dir_fd: int, name: str) -> None:
    """Give a finished partial file its name (never replacing a file there), fsync the folder."""
    try:
        move_without_replacing(dir_fd, partial_name(name), dir_fd, name)
    except BaseException:
        with suppress(OSError):
            os.unlink(partial_name(name), dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def copy_verified(
    src_dir_fd: int, src_name: str, dst_dir_fd: int, dst_name: str, meta: dict[str, Any]
) -> str:
    """Copy across filesystems: write a partial file, fsync, re-read to verify, then name it."""
    src = open_for_reading(src_name, src_dir_fd)
    try:
        digest = hashlib.sha256()
        dst = create_partial(dst_dir_fd, dst_name)
        try:
            offset = 0
            while chunk := os.pread(src, CHUNK, offset):
                digest.update(chunk)
                write_all(dst, chunk)
                offset += len(chunk)
            os.fsync(dst)
            source_sha = digest.hexdigest()
            if sha256_fd(dst) != source_sha:
                raise FileProblem("the copy does not read back the same bytes")
            apply_metadata(dst, meta)
            os.fsync(dst)
        except BaseException:
            drop_partial(dst, dst_dir_fd, dst_name)
            raise
        os.close(dst)
    finally:
        os.close(src)
    place_partial(dst_dir_fd, dst_name)
    return source_sha


def gzip_verified(src: int, dst_dir_fd: int, dst_name: str, budget: Budget) -> tuple[str, int]:
    """Write the file src gzip-compressed as dst_name's partial file, fsynced and read back.

    Returns the SHA-256 of the original bytes and the compressed size; the caller names the
    partial (place_partial) once it has checked the original did not change meanwhile.
    Streams CHUNK at a time. NotCompressed (the partial removed) when it would not save
    MIN_SAVING, the budget's time runs out, or there is no space for it.
    """
    digest = hashlib.sha256()
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header and trailer
    dst = create_partial(dst_dir_fd, dst_name)
    try:
        read = written = 0
        while chunk := os.pread(src, CHUNK, read):
            read += len(chunk)
            digest.update(chunk)
            written += write_all(dst, packer.compress(chunk))
            if not budget.left():
                raise NotCompressed(budget.out_of_time)
            if read >= JUDGE_AFTER and not saves_enough(read, written):
                raise NotCompressed(f"does not compress by {MIN_SAVING:.0%}")
        written += write_all(dst, packer.flush())
        if not saves_enough(read, written):
            raise NotCompressed(f"does not compress by {MIN_SAVING:.0%}")
        os.fsync(dst)
        sha = digest.hexdigest()
        if gunzip_sha256(dst) != sha:
            raise FileProblem("the compressed copy does not read back the same bytes")
    except OSError as error:
        drop_partial(dst, dst_dir_fd, dst_name)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NotCompressed("no space left for a compressed copy") from error
        raise
    except BaseException:
        drop_partial(dst, dst_dir_fd, dst_name)
        raise
    os.close(dst)
    return sha, written


def gunzip_verified(
    stored_fd: int,
    stored_name: str,
    dst_dir_fd: int,
    dst_name: str,
    meta: dict[str, Any],
    expected_sha: str,
) -> None:
    """Decompress a stored copy next to its original path, check it, then name it.

    The partial file must decompress to expected_sha and read back the same from disk before
    it gets its mode, owner and times and its name (never replacing a file: PathTaken).
    """
    src = open_for_reading(stored_name, stored_fd)
    try:
        dst = create_partial(dst_dir_fd, dst_name)
        try:
            digest = hashlib.sha256()
            for chunk in gunzip_chunks(src):
                digest.update(chunk)
                write_all(dst, chunk)
            if digest.hexdigest() != expected_sha:
                raise FileProblem(
                    "its quarantined copy does not decompress to the recorded SHA-256 "
                    "(refused; left in the quarantine)"
                )
            os.fsync(dst)
            if sha256_fd(dst) != expected_sha:
                raise FileProblem("the decompressed file does not read back the same bytes")
            apply_metadata(dst, meta)
            os.fsync(dst)
        except BaseException:
            drop_partial(dst, dst_dir_fd, dst_name)
            raise
        os.close(dst)
    finally:
        os.close(src)
    place_partial(dst_dir_fd, dst_name)


@contextmanager
def opened_dir(path: Path) -> Iterator[int]:
    fd = os.open(path, DIR_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)


def open_chain(top_fd: int, parts: tuple[str, ...], device: int) -> int:
    """Open top/parts... as folders without following any symlink; stays on one filesystem."""
    fd = os.dup(top_fd)
    for name in parts:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError as error:
            os.close(fd)
            raise FileProblem(
                f"folder {name!r} is no longer a plain folder ({error.strerror})"
            ) from error
        os.close(fd)
        fd = child
        if os.fstat(fd).st_dev != device:
            os.close(fd)
            raise FileProblem(f"folder {name!r} is now another filesystem")
    return fd


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


def open_file_ids() -> set[tuple[int, int]]:
    """(device, inode) of every file some process holds open, from the host's /proc.

    This reads the process table, not a path under --root: a file a process still writes to
    is left alone (moving it would free nothing and could surprise the writer).
    """
    ids: set[tuple[int, int]] = set()
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return ids
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            ids.add((st.st_dev, st.st_ino))
    return ids


@contextmanager
def quarantine_lock(quarantine: Path) -> Iterator[None]:
    """One disk runbook at a time on a quarantine."""
    fd = os.open(quarantine / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise Refused(f"another disk runbook is working on {quarantine}") from error
        yield
    finally:
        os.close(fd)


def count_files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# ---------------------------------------------------------------- scanning


@dataclass
class Candidate:
    logical: str  # absolute path on the host, e.g. /tmp/build/a.o
    top: str  # the --temp-dir or --log-dir it was found under
    parts: tuple[str, ...]  # components below top; the last one is the file's name
    st: os.stat_result


@dataclass
class Scan:
    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    directories: dict[str, dict[str, Any]] = field(default_factory=dict)


def scan_top(
    ctx: Context,
    top: str,
    kind: str,
    cutoff_ns: int,
    excluded: set[tuple[int, int]],
    scan: Scan,
) -> None:
    top_real = ctx.path(top)
    with opened_dir(top_real) as top_fd:
        top_stat = os.fstat(top_fd)
        scan.directories[top] = metadata(top_stat)
        _scan_folder(top_fd, top, (), kind, cutoff_ns, top_stat.st_dev, excluded, scan)


def _scan_folder(
    fd: int,
    top: str,
    parts: tuple[str, ...],
    kind: str,
    cutoff_ns: int,
    device: int,
    excluded: set[tuple[int, int]],
    scan: Scan,
) -> None:
    here = "/".join((top.rstrip("/"), *parts)) if parts else top
    try:
        names = sorted(os.listdir(fd))
    except OSError as error:
        scan.notes.append(f"could not list {here}: {error.strerror}")
        return
    for name in names:
        logical = f"{here.rstrip('/')}/{name}"
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as error:
            scan.notes.append(f"could not examine {logical}: {error.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != device:
                scan.notes.append(f"left alone: {logical} is another filesystem")
                continue
            if (st.st_dev, st.st_ino) in excluded:
                continue
            if len(parts) >= MAX_DEPTH:
                scan.notes.append(f"left alone: {logical} is nested too deep")
                continue
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as error:
                scan.notes.append(f"could not open {logical}: {error.strerror}")
                continue
            try:
                scan.directories[logical] = metadata(os.fstat(child))
                _scan_folder(child, top, (*parts, name), kind, cutoff_ns, device, excluded, scan)
            finally:
                os.close(child)
        elif stat.S_ISREG(st.st_mode) and st.st_mtime_ns < cutoff_ns:
            if kind == "log" and not ROTATED_LOG_NAME.search(name):
                continue
            if st.st_nlink > 1:
                # Another name keeps the data: moving this one would free nothing.
                scan.notes.append(f"left alone: {logical} has other hard links")
                continue
            scan.candidates.append(Candidate(logical, top, (*parts, name), st))


# ---------------------------------------------------------------- the manifest


class Manifest:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._written_at = 0.0

    @classmethod
    def load(cls, batch_dir: Path) -> Manifest | None:
        data = read_json(batch_dir / MANIFEST)
        if data is None:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise Refused(f"{batch_dir / MANIFEST} is not a quarantine manifest")
        return cls(batch_dir / MANIFEST, data)

    @classmethod
    def new(cls, batch_dir: Path, batch: str, quarantine: str) -> Manifest:
        data = {
            "format": MANIFEST_FORMAT,
            "batch": batch,
            "quarantine": quarantine,
            "created_at": now_iso(),
            "updated_at": now_iso(),
            "status": "moving",
            "directories": {},
            "files": [],
        }
        return cls(batch_dir / MANIFEST, data)

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.data["files"]

    def save(self) -> None:
        self.data["updated_at"] = now_iso()
        write_json_atomic(self.path, self.data)
        self._written_at = time.monotonic()

    def save_soon(self) -> None:
        if time.monotonic() - self._written_at >= MANIFEST_WRITE_INTERVAL:
            self.save()


# ---------------------------------------------------------------- disk-quarantine


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


@dataclass
class Moved:
    method: str  # rename, copy or gzip
    sha256: str  # of the original bytes
    stored: str  # the copy, relative to the batch folder
    form: str  # PLAIN or GZIPPED
    stored_size: int
    as_is: str | None = None  # why a file was not compressed


def as_is_reason(name: str, head: bytes, size: int, block_size: int) -> str | None:
    """Why a file is stored as it is without trying to compress it; None: try."""
    kind = compression_of(name, head)
    if kind:
        return f"already compressed ({kind})"
    if size <= block_size:
        # It takes one block either way: compressing could not free anything.
        return "smaller than one filesystem block"
    return None


def disk_quarantine(args: argparse.Namespace, ctx: Context) -> str:
    started = time.monotonic()
    batch = batch_id(args)
    budget = compress_budget(started, os.environ.get(COMPRESS_SECONDS_VARIABLE))
    temp_dirs: list[str] = args.temp_dir or []
    log_dirs: list[str] = args.log_dir or []
    if not temp_dirs and not log_dirs:
        raise UsageError("give at least one --temp-dir or --log-dir")
    if args.older_than_days < 1:
        raise UsageError("--older-than-days must be at least 1")
    # Optional (None: no check); cli.py parses it with usage_percent.
    target: float | None = getattr(args, "target_usage_percent", None)
    quarantine = args.quarantine
    ctx.out.details.update(batch=batch, quarantine=quarantine)
    if target is not None:
        ctx.out.details.update(target_usage_percent=target)

    # Pre-checks: every folder is a real folder, and the quarantine is not inside one.
    tops = [(top, "temp") for top in temp_dirs] + [(top, "log") for top in log_dirs]
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

    excluded: set[tuple[int, int]] = set()
    for private in (q_real, ctx.state_dir):
        with suppress(OSError):
            st = os.stat(private)
            excluded.add((st.st_dev, st.st_ino))

    cutoff_ns = time.time_ns() - args.older_than_days * 86400 * 10**9
    scan = Scan()
    for top, kind in tops:
        scan_top(ctx, top, kind, cutoff_ns, excluded, scan)
    for note in scan.notes:
        ctx.line(note)

    candidates: list[Candidate] = []
    seen: set[str] = set()
    in_use = open_file_ids()
    for candidate in scan.candidates:
        if candidate.logical in seen:
            continue
        seen.add(candidate.logical)
        if (candidate.st.st_dev, candidate.st.st_ino) in in_use:
            ctx.line(f"left alone: {candidate.logical} is open in a running process")
            continue
        candidates.append(candidate)

    days = args.older_than_days
    if not candidates:
        ctx.line(f"nothing to do: no file older than {days} days to quarantine")
        ctx.out.details.update(files_moved=0, bytes_moved=0, bytes_freed=0)
        if target is not None and not ctx.dry_run:
            filesystems = _filesystems(ctx, [top for top, _ in tops], quarantine)
            for fs in filesystems.values():
                fs.after = fs.before
            _check_target(ctx, filesystems, target, "nothing old enough to quarantine, and ")
        return NOTHING_TO_DO

    if ctx.dry_run:
        return _quarantine_dry_run(ctx, quarantine, batch, candidates, tops, target)

    make_private_dirs(q_real)
    if stat.S_IMODE(os.stat(q_real).st_mode) != 0o700:
        os.chmod(q_real, 0o700)
    filesystems = _filesystems(ctx, [top for top, _ in tops], quarantine)
    with quarantine_lock(q_real):
        return _quarantine_locked(
            ctx, batch, quarantine, q_real, candidates, scan, filesystems, target, budget
        )


def _filesystems(ctx: Context, tops: list[str], quarantine: str) -> dict[int, Filesystem]:
    """The filesystems of the cleaned folders and of the quarantine, by device."""
    found: dict[int, Filesystem] = {}
    for top in tops:
        fs = found.setdefault(os.stat(ctx.path(top)).st_dev, Filesystem([]))
        fs.cleaned = True
        if top not in fs.paths:
            fs.paths.append(top)
    q_device, q_existing = _device_of_existing(ctx.path(quarantine))
    fs = found.setdefault(q_device, Filesystem([quarantine]))
    fs.holds_quarantine = True
    for current in found.values():
        path = ctx.path(current.paths[0]) if current.cleaned else q_existing
        current.before = filesystem_usage(path)
    return found


def _device_of_existing(path: Path) -> tuple[int, Path]:
    current = path
    while not current.exists():
        current = current.parent
    return os.stat(current).st_dev, current


def _quarantine_dry_run(
    ctx: Context,
    quarantine: str,
    batch: str,
    candidates: list[Candidate],
    tops: list[tuple[str, str]],
    target: float | None,
) -> str:
    filesystems = _filesystems(ctx, [top for top, _ in tops], quarantine)
    q_device, _ = _device_of_existing(ctx.path(quarantine))
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
    manifest.data["format"] = MANIFEST_FORMAT
    by_path = {entry["path"]: entry for entry in manifest.files}

    # The plan goes to disk (fsynced) before the first file moves. How each file is stored is
    # only known once it moved: restore looks for its copy in both trees until then.
    planned: list[tuple[Candidate, dict[str, Any]]] = []
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
    fsync_dir(q_real)
    ctx.line(f"batch {batch}: manifest {quarantine.rstrip('/')}/{batch}/{MANIFEST}")

    q_device = os.stat(q_real).st_dev
    moved = skipped = failed = compressed = 0
    bytes_moved = bytes_stored = 0
    top_fds: dict[str, int] = {}
    try:
        # Largest first: within the time for compressing, they give back the most.
        for candidate, entry in sorted(planned, key=lambda pair: -pair[0].st.st_size):
            if candidate.top not in top_fds:
                top_fds[candidate.top] = os.open(ctx.path(candidate.top), DIR_FLAGS)
            source = filesystems[candidate.st.st_dev]
            block_size = source.before.block_size if source.before else 4096
            try:
                result = _move_one(top_fds[candidate.top], candidate, batch_dir, budget, block_size)
            except FileChanged as why:
                entry["state"] = SKIPPED
                entry["note"] = str(why)
                skipped += 1
                ctx.line(f"left alone: {candidate.logical} {why}")
            except (FileProblem, OSError) as why:
                entry["error"] = str(why)
                failed += 1
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
                moved += 1
                compressed += result.form == GZIPPED
                bytes_moved += entry["size"]
                bytes_stored += result.stored_size
                # The file left its filesystem; its copy takes stored_size on the quarantine's
                # (the same one when renamed or compressed in place) until the purge.
                source.bytes_freed += entry["size"]
                filesystems[q_device].bytes_freed -= result.stored_size
                filesystems[q_device].bytes_freed_at_purge += result.stored_size
                if result.as_is == budget.out_of_time and not budget.announced:
                    budget.announced = True
                    ctx.line(
                        f"compressing stopped after {budget.seconds:g} s: the remaining files "
                        f"are stored as they are"
                    )
                same_fs = candidate.st.st_dev == q_device
                ctx.line(_moved_line(candidate.logical, entry["size"], result, same_fs))
            manifest.save_soon()
    finally:
        for fd in top_fds.values():
            os.close(fd)
        manifest.data["status"] = QUARANTINED
        manifest.save()
        for tree in (FILES, GZIP):
            _remove_empty_folders(batch_dir / tree)

    for fs in filesystems.values():
        fs.after = filesystem_usage(ctx.path(fs.paths[0]) if fs.cleaned else q_real)
    cleaned = [fs for fs in filesystems.values() if fs.cleaned]
    freed_now = sum(fs.bytes_freed for fs in cleaned)
    freed_at_purge = sum(fs.bytes_freed_at_purge for fs in cleaned)
    for fs in filesystems.values():
        _report_filesystem(ctx, fs)
    ctx.line(
        f"quarantined {count_files(moved)}, {human_bytes(bytes_moved)} ({compressed} "
        f"compressed), stored in {human_bytes(bytes_stored)}; the cleaned filesystems got "
        f"{human_bytes(max(freed_now, 0))} back now and get {human_bytes(freed_at_purge)} more "
        f"when the batch is purged (disk-purge, after the retention)"
    )
    ctx.out.details.update(
        files_moved=moved,
        files_compressed=compressed,
        files_skipped=skipped,
        files_failed=failed,
        bytes_moved=bytes_moved,
        bytes_stored=bytes_stored,
        bytes_freed=freed_now,
        bytes_freed_at_purge=freed_at_purge,
        filesystems=[fs.summary() for fs in filesystems.values()],
    )

    # Post-check: each moved file is in the quarantine and gone from where it was.
    missing = _not_in_quarantine(ctx, batch_dir, planned)
    if missing:
        raise Failed(
            f"{count_files(len(missing))} moved but not intact in the quarantine: {missing[0]}"
        )
    if failed:
        raise Failed(f"{failed} of {count_files(len(planned))} could not be moved (see above)")
    _check_target(ctx, filesystems, target, "")
    if moved == 0:
        ctx.line("nothing was moved: every file changed or went away first")
        return NOTHING_TO_DO
    return DONE


def _moved_line(path: str, size: int, moved: Moved, same_fs: bool) -> str:
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


def _report_filesystem(ctx: Context, fs: Filesystem) -> None:
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


def _check_target(
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


def _not_in_quarantine(
    ctx: Context, batch_dir: Path, planned: list[tuple[Candidate, dict[str, Any]]]
) -> list[str]:
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


def _move_one(
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


# ---------------------------------------------------------------- disk-restore


@dataclass
class RestoreTally:
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
        _remove_empty_folders(batch_dir / tree)
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


def stored_copy(batch_dir: Path, entry: dict[str, Any]) -> tuple[Path, str] | None:
    """Where a file's quarantined copy is and how it is stored; None when there is none."""
    if entry["state"] != PLANNED and entry.get("stored"):
        path = batch_dir / entry["stored"]
        form = entry.get("stored_form") or PLAIN  # format 1 manifests stored every file as is
        return (path, form) if os.path.lexists(path) else None
    # Only the plan is on record (a crash during the move): the copy is in either tree, if any.
    relative = entry["path"].lstrip("/")
    for tree, form in ((GZIP, GZIPPED), (FILES, PLAIN)):
        path = batch_dir / tree / relative
        if os.path.lexists(path):
            return path, form
    return None


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
            expected = entry.get("sha256") or _gunzip_sha256_at(stored_fd, stored.name)
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


def _gunzip_sha256_at(dir_fd: int, name: str) -> str:
    fd = open_for_reading(name, dir_fd)
    try:
        return gunzip_sha256(fd)
    finally:
        os.close(fd)


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


def _remove_empty_folders(folder: Path) -> None:
    if not folder.is_dir() or folder.is_symlink():
        return
    for current, _dirs, _files in os.walk(folder, topdown=False):
        with suppress(OSError):
            os.rmdir(current)


# ---------------------------------------------------------------- disk-purge


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
