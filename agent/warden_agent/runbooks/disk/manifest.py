"""A quarantine batch on disk: its layout, its manifest, its lock.

QUARANTINE/<batch>/manifest.json records every file of the batch (its path, size, SHA-256,
mode, owner, times, state, and where and how its copy is stored); the copies are under
QUARANTINE/<batch>/files/ (as they were) or QUARANTINE/<batch>/gzip/ (compressed), each at its
original absolute path. One disk runbook at a time works on a quarantine (LOCK).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..common import WORD, Refused, UsageError, now_iso, read_json, write_json_atomic

MANIFEST = "manifest.json"
FILES = "files"  # files stored as they were
GZIP = "gzip"  # files stored gzip-compressed (same relative path, no suffix: names never clash)
LOCK = ".lock"
# 2: files may be stored gzip-compressed ("stored_form"); format 1 manifests read the same way.
MANIFEST_FORMAT = 2
# While files move the manifest is rewritten at most this often (and always at the end):
# restore works from the plan written before the first move, so this only keeps it current.
MANIFEST_WRITE_INTERVAL = 1.0

# Entry states in the manifest.
PLANNED = "planned"  # written before the move; the move may or may not have happened
QUARANTINED = "quarantined"
RESTORED = "restored"
SKIPPED = "skipped"  # never moved (changed, in use, or gone before we got to it)

# How a file is stored in the quarantine.
PLAIN = "plain"
GZIPPED = "gzip"


def batch_id(args: argparse.Namespace) -> str:
    batch = args.batch or os.environ.get("WARDEN_EXECUTION_ID", "")
    if not batch:
        raise UsageError("no batch: set WARDEN_EXECUTION_ID or pass --batch ID")
    if not WORD.match(batch):
        raise UsageError(f"batch {batch!r} must be letters, digits, '.', '_' or '-'")
    return batch


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


class Manifest:
    """A batch's manifest.json: the plan, then what happened to each file."""

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


def remove_empty_folders(folder: Path) -> None:
    if not folder.is_dir() or folder.is_symlink():
        return
    for current, _dirs, _files in os.walk(folder, topdown=False):
        with suppress(OSError):
            os.rmdir(current)
