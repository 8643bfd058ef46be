"""What the agent owes the server, kept on disk until the server acknowledges it.

Readings: an append-only log of JSON lines in segment files, `readings/NNNN.jsonl`, one
line per reading, fsynced as it is written; `readings/acked` holds the sequence number
of the last reading acknowledged (or dropped), replaced atomically. A crash mid-write
leaves at most a torn last line, which loading skips; each run appends to a segment of
its own, so a torn line is never extended. The log is bounded: past `limit` readings the
oldest go.

Results of actions: one file each, `results/NNNN.json`, written to a temporary file,
fsynced and renamed over, so a result is either whole on disk or not there.

A disk that refuses a write (full, most likely) costs durability, not data: the spool
logs it once, keeps the item in memory, and carries on.

Without a directory both keep everything in memory only (the simulated fleet).

The reading spool is shared by the thread that takes readings and the one that posts
them: each call holds its lock, and the poster removes what it posted by sequence number,
so readings taken (or dropped) while a post is in flight are never confused with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import deque
from itertools import islice
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("warden.agent")

DEFAULT_SPOOL_DIR = "/var/lib/warden-agent/spool"
DEFAULT_LIMIT = 20_000  # about 28 hours of readings at one every 5 s
SEGMENT_SIZE = 1_000  # readings per segment file: each file is small and goes whole
RESULT_LIMIT = 1_000


def _fsync_dir(directory: Path) -> None:
    """Make a created, renamed or deleted entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, text: str) -> None:
    """`path` holds `text` whole, or what it held before: never a part of either."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _make_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


class ReadingSpool:
    """Readings not yet acknowledged by the server, oldest first, at most `limit`."""

    def __init__(
        self,
        directory: str | Path | None,
        limit: int = DEFAULT_LIMIT,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        if limit < 1 or segment_size < 1:
            raise ValueError("a spool's limit and segment size must be at least 1")
        self.limit = limit
        self.segment_size = segment_size
        self._lock = threading.RLock()
        self.directory = _make_dir(Path(directory) / "readings") if directory else None
        self._items: deque[tuple[int, str]] = deque()  # (sequence number, JSON line)
        self._segments: deque[tuple[Path, int]] = deque()  # (file, its last sequence number)
        self._file: IO[bytes] | None = None  # the segment this run appends to
        self._in_file = 0
        self._acked = 0
        self._trouble = False  # a disk problem was logged and has not cleared
        self.skipped = 0  # lines found torn or unreadable when loading
        if self.directory:
            self._load(self.directory)
        self._next = max([self._acked, *(seq for seq, _ in self._items)]) + 1
        if len(self._items) > limit:
            excess = len(self._items) - limit
            log.warning(
                "spool %s held %d readings, more than its limit %d: dropped the oldest %d",
                self.directory,
                len(self._items),
                limit,
                excess,
            )
            self.remove_oldest(excess)

    def __len__(self) -> int:
        return len(self._items)

    def append(self, sample: dict[str, Any]) -> int:
        """Keep `sample` (on disk before this returns); the number of oldest readings
        dropped to stay within the limit."""
        with self._lock:
            return self._append(sample)

    def _append(self, sample: dict[str, Any]) -> int:
        seq, self._next = self._next, self._next + 1
        line = json.dumps({"seq": seq, "sample": sample}, separators=(",", ":"))
        if self.directory:
            try:
                self._write(self.directory, seq, line)
            except OSError as exc:  # a full disk, most likely: the server still gets it
                self._disk_trouble(f"cannot write a reading ({exc}); keeping it in memory")
            else:
                self._trouble = False
        self._items.append((seq, line))
        excess = len(self._items) - self.limit
        if excess > 0:
            self.remove_oldest(excess)
        return max(excess, 0)

    def oldest(self, count: int) -> list[dict[str, Any]]:
        """Up to `count` of the oldest readings, oldest first; they stay until removed."""
        return self.oldest_batch(count)[1]

    def oldest_batch(self, count: int) -> tuple[int, list[dict[str, Any]]]:
        """Up to `count` of the oldest readings, oldest first, and the sequence number of
        the last (0 if none) to remove them by; they stay until removed."""
        with self._lock:
            items = list(islice(self._items, count))
        last = items[-1][0] if items else 0
        return last, [json.loads(line)["sample"] for _, line in items]

    def remove_through(self, seq: int) -> None:
        """Forget the readings up to sequence number `seq` (acknowledged by the server)."""
        with self._lock:
            count = 0
            for item_seq, _ in self._items:
                if item_seq > seq:
                    break
                count += 1
            self.remove_oldest(count)

    def remove_oldest(self, count: int) -> None:
        """Forget the `count` oldest readings: acknowledged by the server, or dropped."""
        with self._lock:
            self._remove_oldest(count)

    def _remove_oldest(self, count: int) -> None:
        count = min(count, len(self._items))
        if not count:
            return
        for _ in range(count):
            self._acked = self._items.popleft()[0]
        if self.directory:
            # The mark first: a crash before the segments go leaves readings the next
            # load knows to skip, never a reading lost that was not acknowledged.
            try:
                write_atomically(self.directory / "acked", f"{self._acked}\n")
                self._delete_acked_segments()
            except OSError as exc:  # after a restart these are sent again; Warden dedupes
                self._disk_trouble(f"cannot record acknowledged readings ({exc})")

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._file:
            with contextlib.suppress(OSError):  # what it failed to write is already known
                self._file.close()
            self._file = None

    def _disk_trouble(self, message: str) -> None:
        """Log a disk problem once until a write succeeds again, not once per reading."""
        if not self._trouble:
            log.warning("spool %s: %s", self.directory, message)
        self._trouble = True

    def _write(self, directory: Path, seq: int, line: str) -> None:
        if self._file is None or self._in_file >= self.segment_size:
            self._close()
            path = directory / f"{seq:016d}.jsonl"
            self._file = open(path, "ab")  # noqa: SIM115 - kept open across appends
            self._in_file = 0
            self._segments.append((path, seq))
            _fsync_dir(directory)
        try:
            self._file.write(line.encode() + b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            self._close()  # a torn line ends this segment: the next reading starts another
            raise
        self._in_file += 1
        path, _ = self._segments[-1]
        self._segments[-1] = (path, seq)

    def _delete_acked_segments(self) -> None:
        current = self._segments[-1][0] if self._file and self._segments else None
        while self._segments and self._segments[0][1] <= self._acked:
            path, _ = self._segments[0]
            if path == current:
                break  # still being appended to; it goes once it is full and acknowledged
            self._segments.popleft()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _load(self, directory: Path) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self._acked = int((directory / "acked").read_text().strip() or 0)
        for path in sorted(directory.glob("*.jsonl")):
            last = self._load_segment(path)
            if last > self._acked:
                self._segments.append((path, last))
            else:
                path.unlink()  # everything in it was acknowledged
        if self.skipped:
            log.warning("spool %s: skipped %d torn or unreadable line(s)", directory, self.skipped)

    def _load_segment(self, path: Path) -> int:
        """Keep the unacknowledged readings of one segment; its last sequence number."""
        last = 0
        *lines, tail = path.read_bytes().split(b"\n")
        self.skipped += bool(tail)  # written without its newline: a crash mid-write
        for raw in lines:
            try:
                record = json.loads(raw)
                seq = record["seq"]
                if not (isinstance(seq, int) and isinstance(record["sample"], dict)):
                    raise ValueError("not a reading")
            except (ValueError, KeyError, TypeError):
                self.skipped += 1
                continue
            last = max(last, seq)
            if seq > self._acked:
                self._items.append((seq, raw.decode()))
        return last


class ResultSpool:
    """Reports of actions the server has not acknowledged yet, oldest first."""

    def __init__(self, directory: str | Path | None, limit: int = RESULT_LIMIT) -> None:
        self.limit = limit
        self.directory = _make_dir(Path(directory) / "results") if directory else None
        self._records: dict[str, tuple[int, dict[str, Any]]] = {}  # key -> (seq, record)
        if self.directory:
            self._load(self.directory)
        self._next = max((seq for seq, _ in self._records.values()), default=0) + 1

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Keep `record` under `key` (replacing it), on disk before this returns."""
        seq = self._records[key][0] if key in self._records else self._next
        self._next = max(self._next, seq + 1)
        if self.directory:
            text = json.dumps({"key": key, "record": record}, ensure_ascii=False)
            try:
                write_atomically(self.directory / f"{seq:016d}.json", text)
            except OSError as exc:  # reported all the same, unless the agent restarts first
                log.warning("spool %s: cannot write result %s (%s)", self.directory, key, exc)
        self._records[key] = (seq, record)
        while len(self._records) > self.limit:
            oldest = next(iter(self._records))
            log.warning("result spool full (%d): dropped the result %s", self.limit, oldest)
            self.remove(oldest)

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """(key, record) of each result kept, oldest first."""
        ordered = sorted(self._records.items(), key=lambda item: item[1][0])
        return [(key, record) for key, (_, record) in ordered]

    def remove(self, key: str) -> None:
        seq, _ = self._records.pop(key)
        if self.directory:
            with contextlib.suppress(OSError):  # gone already, or it goes at the next start
                (self.directory / f"{seq:016d}.json").unlink()

    def _load(self, directory: Path) -> None:
        for leftover in directory.glob("*.tmp"):  # a write that never finished
            leftover.unlink()
        for path in sorted(directory.glob("*.json")):
            try:
                seq = int(path.stem)
                stored = json.loads(path.read_text(encoding="utf-8"))
                key, record = stored["key"], stored["record"]
                if not (isinstance(key, str) and isinstance(record, dict)):
                    raise ValueError("not a result")
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("spool %s: unreadable result %s dropped: %s", directory, path, exc)
                path.unlink()
                continue
            self._records[key] = (seq, record)
