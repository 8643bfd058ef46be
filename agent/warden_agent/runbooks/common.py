"""What every runbook shares: exit codes, the recorded output, commands, state files.

A runbook writes readable lines to stdout as it goes (the agent records them as the
execution's output) and ends with one JSON summary line. It stops by raising one of the
`Stop` exceptions below; `cli.main` turns that into the exit code and the summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

DEFAULT_QUARANTINE = "/var/lib/warden-agent/quarantine"
DEFAULT_STATE_DIR = "/var/lib/warden-agent/state"

# Results named in the summary line.
DONE = "done"
NOTHING_TO_DO = "nothing_to_do"
DRY_RUN = "dry_run"
REFUSED = "refused"
FAILED = "failed"

WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
UNIT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9@._:-]{0,250}\.(service|socket|timer|target|mount|slice)$"
)

# How long a command may take unless a runbook says otherwise.
COMMAND_TIMEOUT = 120.0
# Execution marks older than this are forgotten (the agent never re-sends anything that old).
MARK_RETENTION_SECONDS = 30 * 86400


class Stop(Exception):
    """Ends a runbook early with a one-line reason."""

    exit_code = EXIT_FAILED
    result = FAILED


class UsageError(Stop):
    exit_code = EXIT_USAGE
    result = "usage"


class Refused(Stop):
    """A pre-check said no: nothing was changed."""

    exit_code = EXIT_REFUSED
    result = REFUSED


class Failed(Stop):
    """The action or its post-check failed."""

    exit_code = EXIT_FAILED
    result = FAILED


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_from_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"


def count_files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(value: Any) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())[:16]


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_error_line(self) -> str:
        for text in (self.stderr, self.stdout):
            for line in text.splitlines():
                if line.strip():
                    return line.strip()
        return f"exit status {self.returncode}"


@dataclass
class Output:
    """The lines a runbook prints, and the details that go into its summary."""

    runbook: str
    dry_run: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    details: dict[str, Any] = field(default_factory=dict)

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def summary(self, result: str, exit_code: int, error: str | None = None) -> str:
        body: dict[str, Any] = {
            "runbook": self.runbook,
            "result": result,
            "exit_code": exit_code,
            "dry_run": self.dry_run,
        }
        if error:
            body["error"] = error
        body.update(self.details)
        return json.dumps(body, sort_keys=False, default=str)


@dataclass
class Context:
    """The options every runbook takes, and the helpers built on them."""

    root: Path
    state_dir_logical: str
    dry_run: bool
    out: Output
    execution_id: str | None = None

    def path(self, logical: str) -> Path:
        """`logical` (an absolute path on the host) under --root."""
        return rooted(self.root, logical)

    @property
    def state_dir(self) -> Path:
        return self.path(self.state_dir_logical)

    def line(self, text: str) -> None:
        self.out.line(text)

    def require_tool(self, name: str) -> None:
        """Pre-check: the executable is on PATH."""
        if not find_executable(name):
            raise Refused(f"{name} is not installed (not found on PATH)")

    def query(
        self, argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, stdin: str | None = None
    ) -> CommandResult:
        """Run a read-only command (also in a dry run); nothing is printed."""
        return run_command(argv, timeout=timeout, stdin=stdin)

    def change(
        self,
        argv: Sequence[str],
        *,
        timeout: float = COMMAND_TIMEOUT,
        stdin: str | None = None,
        echo_output: bool = True,
    ) -> CommandResult | None:
        """Run a command that changes the host; in a dry run only say so (returns None)."""
        shown = shlex.join(argv)
        if self.dry_run:
            self.line(f"would run: {shown}")
            return None
        self.line(f"run: {shown}")
        result = run_command(argv, timeout=timeout, stdin=stdin)
        if echo_output:
            for text in (result.stdout, result.stderr):
                for line in text.splitlines():
                    if line.strip():
                        self.line(f"  {line.rstrip()}")
        if not result.ok:
            self.line(f"  exit status {result.returncode}")
        return result


def rooted(root: Path, logical: str) -> Path:
    if not logical.startswith("/"):
        raise UsageError(f"{logical!r} is not an absolute path")
    relative = logical.lstrip("/")
    return root / relative if relative else root


def absolute_path(text: str) -> str:
    """argparse type: an absolute path, normalised (no '..' escapes --root)."""
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    normal = os.path.normpath(text)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal


def find_executable(name: str) -> str | None:
    return shutil.which(name)


def run_command(
    argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, stdin: str | None = None
) -> CommandResult:
    """Run argv (found on PATH, no shell); a missing tool or a timeout is a failure."""
    try:
        completed = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as error:
        raise Failed(f"{argv[0]} is not installed (not found on PATH)") from error
    except subprocess.TimeoutExpired as error:
        raise Failed(f"{shlex.join(argv)} did not finish within {timeout:g} s") from error
    return CommandResult(list(argv), completed.returncode, completed.stdout, completed.stderr)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace path with data: temp file in the same folder, fsync, rename, fsync the folder."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if os.path.lexists(temp_name):
            os.unlink(temp_name)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any, mode: int = 0o600) -> None:
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read {path}: {error}") from error


def make_private_dirs(path: Path) -> None:
    """mkdir -p with mode 0700 for every folder it creates (Path.mkdir ignores mode for parents)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)


def state_file(ctx: Context, *parts: str) -> Path:
    return ctx.state_dir.joinpath(*parts)


def ensure_state_dir(ctx: Context, *parts: str) -> Path:
    folder = ctx.state_dir.joinpath(*parts)
    make_private_dirs(folder)
    return folder


# Execution marks: restarting a unit or flushing a cache is safe to repeat, but the agent may
# deliver the same execution again after a crash; the second delivery then does nothing.


def _marks_path(ctx: Context, runbook: str) -> Path:
    return state_file(ctx, "executions", f"{runbook}.json")


def execution_mark_key(ctx: Context, arguments: Mapping[str, Any]) -> str | None:
    if not ctx.execution_id:
        return None
    return f"{ctx.execution_id}:{digest_of(dict(arguments))}"


def already_done(ctx: Context, runbook: str, arguments: Mapping[str, Any]) -> str | None:
    """When this execution already ran this runbook with these arguments: the time it did."""
    key = execution_mark_key(ctx, arguments)
    if key is None:
        return None
    marks = read_json(_marks_path(ctx, runbook)) or {}
    found = marks.get(key)
    return str(found) if found else None


def mark_done(ctx: Context, runbook: str, arguments: Mapping[str, Any]) -> None:
    key = execution_mark_key(ctx, arguments)
    if key is None or ctx.dry_run:
        return
    path = _marks_path(ctx, runbook)
    make_private_dirs(path.parent)
    marks = read_json(path) or {}
    cutoff = time.time() - MARK_RETENTION_SECONDS
    kept = {k: v for k, v in marks.items() if _mark_time(v) >= cutoff}
    kept[key] = now_iso()
    write_json_atomic(path, kept)


def _mark_time(value: Any) -> float:
    try:
        return parse_iso(str(value)).timestamp()
    except ValueError:
        return 0.0
