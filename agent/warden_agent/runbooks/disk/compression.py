"""Storing a quarantined file gzip-compressed, and getting it back, both verified.

A file is compressed only when that saves at least MIN_SAVING (and it is not compressed
already, and bigger than a filesystem block), within the run's time budget; otherwise it is
stored as it is. Both directions stream and check the SHA-256 of the original bytes.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..common import UsageError
from .files import (
    CHUNK,
    FileProblem,
    apply_metadata,
    create_partial,
    drop_partial,
    open_for_reading,
    place_partial,
    sha256_fd,
    write_all,
)

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


def as_is_reason(name: str, head: bytes, size: int, block_size: int) -> str | None:
    """Why a file is stored as it is without trying to compress it; None: try."""
    kind = compression_of(name, head)
    if kind:
        return f"already compressed ({kind})"
    if size <= block_size:
        # It takes one block either way: compressing could not free anything.
        return "smaller than one filesystem block"
    return None


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


def gunzip_sha256_at(dir_fd: int, name: str) -> str:
    fd = open_for_reading(name, dir_fd)
    try:
        return gunzip_sha256(fd)
    finally:
        os.close(fd)
