"""Finding what disk-quarantine may move: old temp files and old rotated logs.

The folders are walked through file descriptors (O_NOFOLLOW, one filesystem, at most
MAX_DEPTH deep). A file qualifies when it was last modified before the cutoff, has no other
hard link, is not open in a running process and (in a --log-dir) has a rotated log's name.
"""

from __future__ import annotations

import os
import re
import stat
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common import Context
from .files import DIR_FLAGS, metadata, opened_dir

# app.log.1, app.log.2.gz, *.gz, *.xz, *.bz2, *.zst, *.old, app.log-20261201 (logrotate's dateext).
ROTATED_LOG_NAME = re.compile(r"(\.\d+|\.(gz|xz|bz2|zst|old)|-\d{8}(\d{2})?|-\d{4}-\d{2}-\d{2})$")
MAX_DEPTH = 64


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


def find_candidates(
    ctx: Context, tops: list[tuple[str, str]], q_real: Path, older_than_days: int
) -> tuple[list[Candidate], Scan]:
    """The files to quarantine under tops ((folder, "temp" or "log") pairs), each once.

    The quarantine and the runbooks' state folder are never walked into; the scan's notes and
    the files left alone because a process holds them open are printed.
    """
    excluded: set[tuple[int, int]] = set()
    for private in (q_real, ctx.state_dir):
        with suppress(OSError):
            st = os.stat(private)
            excluded.add((st.st_dev, st.st_ino))

    cutoff_ns = time.time_ns() - older_than_days * 86400 * 10**9
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
    return candidates, scan


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


def is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
