"""Handling files through folder file descriptors, never following a symlink.

Everything here works on a folder fd plus a name (opened with O_NOFOLLOW), so a path that is
swapped for a symlink meanwhile is refused rather than followed: reading and hashing, copying
across filesystems with a partial file that is fsynced and read back before it gets its name,
renaming without replacing a file that appeared, and a file's mode, owner and times.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class FileProblem(Exception):
    """One file could not be handled; the others go on."""


class FileChanged(FileProblem):
    """The file changed or is in use: left alone, which is not a failure."""


class PathTaken(FileProblem):
    """A file appeared at the path a file was to be put at: it is never overwritten."""


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
