"""disk-quarantine, disk-restore and disk-purge, run as the real CLI on real files.

Everything happens in a scratch root (--root): files are really moved, compressed, chowned,
restored and compared byte for byte with their mode, owner and times. The tests that measure
free space or cross a filesystem boundary mount a small tmpfs in a private mount namespace
(root, `unshare` and `nsenter` from util-linux; with CI=1 missing tools fail the test).
"""

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.agent.runbook_runs import Run, run_runbook, runbook_env

QUARANTINE = "/var/lib/warden-agent/quarantine"
DAY_NS = 86400 * 10**9
IS_ROOT = os.geteuid() == 0


def runbook(*args: str, execution_id: str | None = "42", **env: str) -> Run:
    return run_runbook(*args, execution_id=execution_id, env=env)


def quarantine_args(root: Path, *extra: str) -> list[str]:
    return [
        "disk-quarantine",
        "--root",
        str(root),
        "--temp-dir",
        "/tmp",
        "--temp-dir",
        "/var/tmp",
        "--log-dir",
        "/var/log",
        "--older-than-days",
        "7",
        "--quarantine",
        QUARANTINE,
        *extra,
    ]


@dataclass(frozen=True)
class Facts:
    sha256: str
    size: int
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int


def write_file(
    path: Path,
    content: bytes,
    *,
    age_days: float,
    mode: int = 0o644,
    owner: tuple[int, int] | None = None,
) -> Facts:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if owner is not None:
        os.chown(path, *owner)
    os.chmod(path, mode)
    now = time.time_ns()
    # atime and mtime differ, so restoring one into the other would show.
    atime, mtime = now - int(age_days * DAY_NS) + 12345, now - int(age_days * DAY_NS)
    os.utime(path, ns=(atime, mtime))
    st = os.lstat(path)
    return Facts(
        hashlib.sha256(content).hexdigest(),
        len(content),
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_atime_ns,
        st.st_mtime_ns,
    )


def facts_of(path: Path) -> Facts:
    st = os.lstat(path)  # before reading: reading may update the atime
    return Facts(
        hashlib.sha256(path.read_bytes()).hexdigest(),
        st.st_size,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_atime_ns,
        st.st_mtime_ns,
    )


def tree(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every path under root with its type/mode, size, owner and mtime (for 'nothing changed')."""
    found = {}
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(current) / name
            st = os.lstat(path)
            found[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_uid, st.st_mtime_ns)
    return found


def log_text(size: int) -> bytes:
    """Log lines as a service writes them: text that gzip shrinks to about a tenth."""
    lines = b"".join(
        b"2026-11-%02d 12:%02d:%02d web-01 app[812]: GET /api/v1/items/%d 200 in %d ms\n"
        % (1 + n % 28, n % 60, n * 7 % 60, n * 7919 % 100003, n % 977)
        for n in range(size // 60 + 1)
    )
    return lines[:size]


# Compressible text behind the first bytes of xz, zstd and bzip2: judged by those bytes, such
# files are stored as they are (gzip would shrink what follows, which shows if they were not).
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh9\x31\x41\x59\x26\x53\x59"


@dataclass
class Host:
    root: Path
    old: dict[str, Facts]  # logical path -> facts: what disk-quarantine should move
    kept: dict[str, Facts]  # what it must leave
    compressible: set[str] = field(default_factory=set)  # of old: stored gzip-compressed
    compressed: dict[str, str] = field(default_factory=dict)  # of old: compressed already, how


@pytest.fixture
def host(tmp_path: Path) -> Host:
    root = tmp_path / "root"
    old: dict[str, Facts] = {}
    kept: dict[str, Facts] = {}
    compressible: set[str] = set()
    compressed: dict[str, str] = {}

    def add(logical: str, content: bytes, *, move: bool, **kwargs: Any) -> None:
        facts = write_file(root / logical.lstrip("/"), content, **kwargs)
        (old if move else kept)[logical] = facts

    other = (4242, 4343) if IS_ROOT else None
    add("/tmp/build/deep/nested/a.o", os.urandom(3000), move=True, age_days=30, mode=0o640)
    add("/tmp/big.bin", os.urandom(2 * 1024 * 1024 + 7), move=True, age_days=9, owner=other)
    add("/tmp/empty", b"", move=True, age_days=40, mode=0o600)
    add("/tmp/setuid-tool", b"#!/bin/sh\n", move=True, age_days=12, mode=0o4751, owner=other)
    add("/tmp/no-permissions", b"secret", move=True, age_days=12, mode=0o000)
    add("/var/tmp/session.dat", b"old session", move=True, age_days=8)
    add("/tmp/fresh.txt", b"still in use", move=False, age_days=1)
    # Rotated logs: two app.log.1 in different folders must stay two files.
    add("/var/log/app/app.log.1", b"app one\n", move=True, age_days=10)
    add("/var/log/other/app.log.1", b"other one\n", move=True, age_days=10, owner=other)
    add("/var/log/app/app.log.2.gz", os.urandom(500), move=True, age_days=20)
    add("/var/log/app/app.log-20261101", b"dated\n", move=True, age_days=20)
    add("/var/log/syslog.old", b"old\n", move=True, age_days=20)
    add("/var/log/kern.log.3.xz", os.urandom(100), move=True, age_days=20)
    add("/var/log/auth.log.4.bz2", os.urandom(100), move=True, age_days=20)
    # Text that compresses: stored gzip-compressed, owner and set-gid mode kept for the restore.
    add(
        "/var/log/app/big.log.1",
        log_text(300_000),
        move=True,
        age_days=10,
        mode=0o2640,
        owner=other,
    )
    add("/tmp/report.csv", log_text(50_000), move=True, age_days=9)
    compressible.update({"/var/log/app/big.log.1", "/tmp/report.csv"})
    # Compressed already, by name or by their first bytes: stored as they are.
    add("/var/log/app/app.log.3.gz", gzip.compress(log_text(40_000)), move=True, age_days=20)
    add("/tmp/export.dat", gzip.compress(log_text(40_000)), move=True, age_days=20)
    add("/tmp/archive.part", XZ_MAGIC + log_text(20_000), move=True, age_days=20)
    add("/tmp/frames.bin", ZSTD_MAGIC + log_text(20_000), move=True, age_days=20)
    add("/tmp/dump.raw", BZIP2_MAGIC + log_text(20_000), move=True, age_days=20)
    compressed.update(
        {
            "/var/log/app/app.log.3.gz": "gzip",
            "/tmp/export.dat": "gzip",
            "/tmp/archive.part": "xz",
            "/tmp/frames.bin": "zstd",
            "/tmp/dump.raw": "bzip2",
        }
    )
    add("/var/log/app/app.log", b"the live log\n", move=False, age_days=30)
    add("/var/log/app/app.log.1.new-rotation", b"not rotated\n", move=False, age_days=30)
    add("/var/log/app/app.log.5", b"recent rotation\n", move=False, age_days=2)
    # Left alone whatever their age: a folder, a symlink (to a file and to a folder outside).
    old_dir = root / "tmp/old-empty-dir"
    old_dir.mkdir(parents=True)
    os.utime(old_dir, ns=(time.time_ns() - 30 * DAY_NS,) * 2)
    outside = tmp_path / "outside"
    add_outside = write_file(outside / "precious", b"not in tmp", age_days=60)
    (root / "tmp/link-to-file").symlink_to(outside / "precious")
    (root / "tmp/link-to-dir").symlink_to(outside)
    os.utime(root / "tmp/link-to-file", ns=(1, 1), follow_symlinks=False)
    assert add_outside.sha256
    # The folders of nested files have their own modes and owners.
    os.chmod(root / "tmp/build/deep", 0o750)
    if IS_ROOT:
        os.chown(root / "tmp/build/deep", 4242, 4343)
    return Host(root, old, kept, compressible, compressed)


def manifest_of(root: Path, batch: str = "42") -> dict[str, Any]:
    return json.loads((root / QUARANTINE.lstrip("/") / batch / "manifest.json").read_text())


def quarantined_path(root: Path, batch: str, logical: str) -> Path:
    """The stored copy of a file: BATCH/gzip/PATH when compressed, else BATCH/files/PATH."""
    for tree in ("gzip", "files"):
        path = root / QUARANTINE.lstrip("/") / batch / tree / logical.lstrip("/")
        if path.exists():
            return path
    raise AssertionError(f"no quarantined copy of {logical}")


def stored_content(root: Path, batch: str, logical: str) -> bytes:
    """What the stored copy holds: decompressed when it is in the gzip tree."""
    path = quarantined_path(root, batch, logical)
    tree = path.relative_to(root / QUARANTINE.lstrip("/") / batch).parts[0]
    return gzip.decompress(path.read_bytes()) if tree == "gzip" else path.read_bytes()


def moved_line(run: Run, logical: str) -> str:
    return next(line for line in run.stdout.splitlines() if line.startswith(f"moved {logical} ("))


def test_quarantine_moves_old_files_and_restore_puts_each_back_exactly(host: Host) -> None:
    run = runbook(*quarantine_args(host.root))

    assert run.exit_code == 0, run.stderr
    assert run.summary["result"] == "done"
    assert run.summary["batch"] == "42"  # WARDEN_EXECUTION_ID names the batch
    assert run.summary["files_moved"] == len(host.old)
    assert run.summary["files_compressed"] == len(host.compressible)
    assert run.summary["bytes_moved"] == sum(facts.size for facts in host.old.values())
    assert run.summary["bytes_stored"] == sum(
        os.lstat(quarantined_path(host.root, "42", p)).st_size for p in host.old
    )
    for logical, facts in host.old.items():
        assert not (host.root / logical.lstrip("/")).exists(), logical
        stored = stored_content(host.root, "42", logical)
        assert hashlib.sha256(stored).hexdigest() == facts.sha256, logical
        assert f"moved {logical} " in run.stdout
    for logical, facts in host.kept.items():
        assert facts_of(host.root / logical.lstrip("/")) == facts, logical
    assert (host.root / "tmp/old-empty-dir").is_dir()
    assert (host.root / "tmp/link-to-file").is_symlink()
    assert (host.root / "tmp/link-to-dir").is_symlink()
    assert (host.root.parent / "outside/precious").read_bytes() == b"not in tmp"
    quarantine = host.root / QUARANTINE.lstrip("/")
    assert stat.S_IMODE(os.stat(quarantine).st_mode) == 0o700

    manifest = manifest_of(host.root)
    recorded = {entry["path"]: entry for entry in manifest["files"]}
    assert set(recorded) == set(host.old)
    for logical, facts in host.old.items():
        entry = recorded[logical]
        assert entry["state"] == "quarantined"
        assert (entry["sha256"], int(entry["mode"], 8), entry["uid"], entry["gid"]) == (
            facts.sha256,
            facts.mode,
            facts.uid,
            facts.gid,
        )
        assert (entry["atime_ns"], entry["mtime_ns"]) == (facts.atime_ns, facts.mtime_ns)
        assert entry["size"] == facts.size
        stored = quarantined_path(host.root, "42", logical)
        assert entry["stored"] == str(stored.relative_to(quarantine / "42"))
        assert entry["stored_size"] == os.lstat(stored).st_size
        assert entry["stored_form"] == ("gzip" if logical in host.compressible else "plain")

    # The folder of a nested file disappears, and comes back as it was.
    shutil.rmtree(host.root / "tmp/build")
    restore = runbook("disk-restore", "--root", str(host.root), "--quarantine", QUARANTINE)

    assert restore.exit_code == 0, restore.stderr
    assert restore.summary["files_restored"] == len(host.old)
    for logical, facts in host.old.items():
        assert facts_of(host.root / logical.lstrip("/")) == facts, logical
    deep = os.stat(host.root / "tmp/build/deep")
    assert stat.S_IMODE(deep.st_mode) == 0o750
    if IS_ROOT:
        assert (deep.st_uid, deep.st_gid) == (4242, 4343)
    assert "recreated folder /tmp/build" in restore.stdout
    assert json.loads((quarantine / "42" / "manifest.json").read_text())["status"] == "restored"


def test_dry_runs_change_nothing(host: Host) -> None:
    before = tree(host.root)

    run = runbook(*quarantine_args(host.root, "--dry-run"))

    assert run.exit_code == 0, run.stderr
    assert run.summary["result"] == "dry_run"
    assert run.summary["files_to_move"] == len(host.old)
    for logical in host.old:
        assert f"would move {logical} " in run.stdout
    # Whether it pays is known only by compressing: the random big.bin is tried too.
    tried = {
        line.split()[2]
        for line in run.stdout.splitlines()
        if line.endswith("(gzip if that saves 10%, else as is: rename)")
    }
    assert tried == host.compressible | {"/tmp/big.bin"}
    assert run.summary["files_to_try_compressing"] == len(tried)
    for logical, kind in host.compressed.items():
        line = next(x for x in run.stdout.splitlines() if x.startswith(f"would move {logical} "))
        assert f"as is, already compressed ({kind})" in line
        assert "frees nothing until the batch is purged" in line
    for logical in host.kept:
        assert f" {logical} " not in run.stdout
    assert tree(host.root) == before

    assert runbook(*quarantine_args(host.root)).exit_code == 0
    after_quarantine = tree(host.root)
    restore = runbook("disk-restore", "--root", str(host.root), "--dry-run")
    assert restore.exit_code == 0, restore.stderr
    assert restore.summary["files_to_restore"] == len(host.old)
    assert "/var/log/app/big.log.1 (" in restore.stdout
    assert restore.stdout.count(", decompressed and verified)") == len(host.compressible)
    assert tree(host.root) == after_quarantine


def test_running_twice_is_safe_and_the_second_run_has_nothing_to_do(host: Host) -> None:
    first = runbook(*quarantine_args(host.root))
    second = runbook(*quarantine_args(host.root))

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert second.summary["result"] == "nothing_to_do"
    assert "nothing to do" in second.stdout

    restored = runbook("disk-restore", "--root", str(host.root))
    again = runbook("disk-restore", "--root", str(host.root))
    assert (restored.exit_code, again.exit_code) == (0, 0)
    assert again.summary["result"] == "nothing_to_do"
    for logical, facts in host.old.items():
        assert facts_of(host.root / logical.lstrip("/")) == facts


def test_restore_never_overwrites_a_different_file_and_restores_the_rest(host: Host) -> None:
    assert runbook(*quarantine_args(host.root)).exit_code == 0
    taken = host.root / "var/log/app/app.log.1"
    taken.write_bytes(b"a new file with the same name\n")

    restore = runbook("disk-restore", "--root", str(host.root))

    assert restore.exit_code == 1
    assert "/var/log/app/app.log.1" in restore.stderr
    assert restore.summary["conflicts"] == ["/var/log/app/app.log.1"]
    assert taken.read_bytes() == b"a new file with the same name\n"
    for logical, facts in host.old.items():
        if logical != "/var/log/app/app.log.1":
            assert facts_of(host.root / logical.lstrip("/")) == facts, logical

    # Once the other file is out of the way, the same restore finishes the batch.
    taken.unlink()
    finish = runbook("disk-restore", "--root", str(host.root))
    assert finish.exit_code == 0, finish.stderr
    assert finish.summary["files_restored"] == 1
    assert facts_of(taken) == host.old["/var/log/app/app.log.1"]


def test_a_batch_interrupted_mid_way_can_still_be_restored(host: Host) -> None:
    """The state a crash leaves: the plan is on disk, some files moved, none confirmed.

    Made by rewinding a finished batch's manifest to its plan (no hashes, no stored form,
    every file "planned"), putting one file back where it was, as if the crash came before its
    move, and another beside its compressed copy, as if it came before the original was
    deleted.
    """
    assert runbook(*quarantine_args(host.root)).exit_code == 0
    manifest_path = host.root / QUARANTINE.lstrip("/") / "42" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        entry.update(state="planned", sha256=None, stored=None, stored_form=None)
    manifest_path.write_text(json.dumps(manifest))
    never_moved = "/var/tmp/session.dat"
    os.rename(quarantined_path(host.root, "42", never_moved), host.root / never_moved.lstrip("/"))
    not_yet_deleted = "/tmp/report.csv"
    original = host.root / not_yet_deleted.lstrip("/")
    original.write_bytes(stored_content(host.root, "42", not_yet_deleted))
    facts = host.old[not_yet_deleted]
    os.chmod(original, facts.mode)
    os.utime(original, ns=(facts.atime_ns, facts.mtime_ns))

    restore = runbook("disk-restore", "--root", str(host.root))

    assert restore.exit_code == 0, restore.stderr
    assert f"nothing to restore for {never_moved}: it was never moved" in restore.stdout
    assert (
        f"{not_yet_deleted} is already in place with the same content; dropped the copy"
        in restore.stdout
    )
    # No SHA-256 in the plan: the compressed copy is checked by gzip's own CRC-32.
    assert "restored /var/log/app/big.log.1 (293.0 KiB, decompressed" in restore.stdout
    for logical, facts in host.old.items():
        assert facts_of(host.root / logical.lstrip("/")) == facts, logical


def test_files_open_in_a_process_are_left_alone(host: Host) -> None:
    held = host.root / "tmp/held-open.log"
    write_file(held, b"being written", age_days=30)
    with open(held, "rb"):
        run = runbook(*quarantine_args(host.root))

    assert run.exit_code == 0, run.stderr
    assert held.read_bytes() == b"being written"
    assert "left alone: /tmp/held-open.log is open in a running process" in run.stdout


def test_files_with_other_hard_links_are_left_alone(host: Host) -> None:
    linked = host.root / "tmp/linked.dat"
    facts = write_file(linked, b"two names, one file", age_days=30)
    os.link(linked, host.root / "var/tmp/other-name.dat")

    run = runbook(*quarantine_args(host.root))

    assert run.exit_code == 0, run.stderr
    assert facts_of(linked) == facts
    assert "left alone: /tmp/linked.dat has other hard links" in run.stdout


def test_pre_checks_refuse_and_change_nothing(host: Host) -> None:
    before = tree(host.root)

    missing = runbook(*quarantine_args(host.root, "--temp-dir", "/no/such/dir"))
    (host.root / "srv").symlink_to(host.root / "tmp")
    symlinked = runbook(*quarantine_args(host.root, "--temp-dir", "/srv"))
    inside = runbook(*quarantine_args(host.root, "--quarantine", "/tmp/quarantine"))

    for run, reason in (
        (missing, "/no/such/dir does not exist"),
        (symlinked, "/srv is not a plain folder"),
        (inside, "overlap"),
    ):
        assert run.exit_code == 3, run.stdout
        assert run.summary["result"] == "refused"
        assert reason in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    (host.root / "srv").unlink()
    assert tree(host.root) == before


def test_without_a_batch_id_it_is_a_usage_error(host: Host) -> None:
    run = runbook(*quarantine_args(host.root), execution_id=None)

    assert run.exit_code == 2
    assert run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "warden-runbook disk-quarantine: error: "
        "no batch: set WARDEN_EXECUTION_ID or pass --batch ID"
    ]
    with_option = runbook(*quarantine_args(host.root, "--batch", "manual-1"), execution_id=None)
    assert with_option.exit_code == 0
    assert with_option.summary["batch"] == "manual-1"


def test_compressed_files_are_stored_as_they_are_and_said_to_free_nothing_yet(
    host: Host,
) -> None:
    """The scratch root is one filesystem, the quarantine's too: what is stored as it is stays
    on that filesystem until the purge, and the output says so file by file."""
    run = runbook(*quarantine_args(host.root))

    assert run.exit_code == 0, run.stderr
    recorded = {entry["path"]: entry for entry in manifest_of(host.root)["files"]}
    for logical, kind in host.compressed.items():
        stored = quarantined_path(host.root, "42", logical)
        assert stored.parts[-1 - logical.count("/")] == "files", logical
        assert facts_of(stored) == host.old[logical], logical  # the same file, renamed
        assert recorded[logical]["stored_form"] == "plain"
        line = moved_line(run, logical)
        assert f"rename; as is, already compressed ({kind}): frees nothing until the batch " in line
    for logical in host.compressible:
        stored = quarantined_path(host.root, "42", logical)
        assert stored.read_bytes()[:2] == b"\x1f\x8b", logical
        assert stored.stat().st_size < host.old[logical].size * 0.9
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600  # its own metadata is in the manifest
        assert f"moved {logical} (" in run.stdout
        assert "% smaller) sha256 " + host.old[logical].sha256 in moved_line(run, logical)
    summary = run.summary
    assert summary["bytes_freed"] == summary["bytes_moved"] - summary["bytes_stored"]
    assert summary["bytes_freed_at_purge"] == summary["bytes_stored"]
    [filesystem] = summary["filesystems"]
    assert filesystem["cleaned"] and filesystem["quarantine"]
    assert filesystem["paths"] == ["/tmp", "/var/tmp", "/var/log"]


def test_restore_refuses_copies_that_do_not_match_and_restores_the_rest(host: Host) -> None:
    assert runbook(*quarantine_args(host.root)).exit_code == 0
    forged = quarantined_path(host.root, "42", "/var/log/app/big.log.1")
    forged.write_bytes(gzip.compress(b"not what was quarantined\n"))  # valid gzip, other bytes
    damaged = quarantined_path(host.root, "42", "/tmp/report.csv")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    left = {path: path.read_bytes() for path in (forged, damaged)}

    restore = runbook("disk-restore", "--root", str(host.root))

    assert restore.exit_code == 1
    assert restore.summary["result"] == "failed"
    assert restore.summary["files_failed"] == 2
    assert (
        "could not restore /var/log/app/big.log.1: its quarantined copy does not decompress "
        "to the recorded SHA-256 (refused; left in the quarantine)" in restore.stdout
    )
    assert "could not restore /tmp/report.csv: its compressed copy " in restore.stdout
    [error] = restore.stderr.strip().splitlines()
    assert error.startswith("failed: 2 files could not be restored: ")
    for path, content in left.items():
        assert path.read_bytes() == content  # still in the quarantine, as it was
    for logical in ("/var/log/app/big.log.1", "/tmp/report.csv"):
        original = host.root / logical.lstrip("/")
        assert not original.exists()
        assert not [name for name in os.listdir(original.parent) if "warden-partial" in name]
    recorded = {entry["path"]: entry for entry in manifest_of(host.root)["files"]}
    assert recorded["/tmp/report.csv"]["state"] == "quarantined"
    for logical, facts in host.old.items():
        if logical not in ("/var/log/app/big.log.1", "/tmp/report.csv"):
            assert facts_of(host.root / logical.lstrip("/")) == facts, logical


def test_once_the_time_for_compressing_is_used_up_files_are_stored_as_they_are(
    host: Host,
) -> None:
    no_time = {"WARDEN_RUNBOOK_COMPRESS_SECONDS": "0"}
    bad = runbook(*quarantine_args(host.root), WARDEN_RUNBOOK_COMPRESS_SECONDS="soon")
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "warden-runbook disk-quarantine: error: "
        "WARDEN_RUNBOOK_COMPRESS_SECONDS='soon' is not a number of seconds"
    ]

    run = runbook(*quarantine_args(host.root), **no_time)

    assert run.exit_code == 0, run.stderr
    assert run.summary["files_compressed"] == 0
    assert "compressing stopped after 0 s: the remaining files are stored as they are" in run.stdout
    for logical in host.compressible:
        assert "as is, out of time for compressing (0 s): frees nothing until" in moved_line(
            run, logical
        )
        assert facts_of(quarantined_path(host.root, "42", logical)) == host.old[logical]


@pytest.mark.parametrize(
    ("value", "message"),
    [("150", "must be between 1 and 99"), ("full", "is not a percentage (like 90)")],
)
def test_a_target_usage_that_is_not_a_percentage_is_a_usage_error(
    host: Host, value: str, message: str
) -> None:
    before = tree(host.root)

    run = runbook(*quarantine_args(host.root, "--target-usage-percent", value))

    assert run.exit_code == 2
    assert run.stdout == ""
    [error] = run.stderr.strip().splitlines()
    assert error.startswith(
        "warden-runbook disk-quarantine: error: argument --target-usage-percent"
    )
    assert message in error
    assert tree(host.root) == before


def test_purge_deletes_only_batches_past_the_retention(host: Host) -> None:
    assert runbook(*quarantine_args(host.root), execution_id="old").exit_code == 0
    write_file(host.root / "tmp/later.tmp", b"later", age_days=30)
    assert runbook(*quarantine_args(host.root), execution_id="new").exit_code == 0
    quarantine = host.root / QUARANTINE.lstrip("/")
    manifest_path = quarantine / "old" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["created_at"] = "2020-01-01T00:00:00Z"
    manifest_path.write_text(json.dumps(manifest))
    args = ["disk-purge", "--root", str(host.root), "--retention-days", "14"]

    dry = runbook(*args, "--dry-run")
    assert dry.exit_code == 0
    assert dry.summary["batches_to_delete"] == ["old"]
    assert (quarantine / "old").is_dir()

    purge = runbook(*args)
    assert purge.exit_code == 0, purge.stderr
    assert purge.summary["batches_deleted"] == ["old"]
    assert purge.summary["bytes_freed"] > 2 * 1024 * 1024
    assert not (quarantine / "old").exists()
    assert (quarantine / "new" / "files/tmp/later.tmp").read_bytes() == b"later"

    again = runbook(*args)
    assert again.exit_code == 0
    assert again.summary["result"] == "nothing_to_do"


def require_mount_namespaces() -> None:
    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install util-linux)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")


@dataclass
class Tmpfs:
    """A small tmpfs in a private mount namespace, held open by a sleeping process.

    The test reaches its files through /proc/PID/root (the namespace's view of the paths) and
    runs the runbooks inside the namespace with nsenter, with the tmpfs as --root: the temp
    folders, the logs and the quarantine are all on it, as on a host with one filesystem.
    """

    pid: int
    inside: Path  # the mount point, as processes in the namespace see it

    @property
    def view(self) -> Path:
        return Path(f"/proc/{self.pid}/root") / str(self.inside).lstrip("/")

    def free(self) -> int:
        info = os.statvfs(self.view)
        return info.f_bavail * info.f_frsize

    def runbook(self, *args: str, execution_id: str = "42") -> Run:
        command = [sys.executable, "-m", "warden_agent.runbooks", *args]
        completed = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--mount", "--", *command],
            capture_output=True,
            text=True,
            env=runbook_env(execution_id),
            timeout=120,
            check=False,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    require_mount_namespaces()
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    script = 'mount -t tmpfs -o size=16m,mode=0755 tmpfs "$1" && echo mounted && exec sleep 600'
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", mount_point],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "mounted":
            holder.wait(timeout=10)
            assert holder.stderr is not None
            pytest.skip(f"cannot mount a tmpfs here: {holder.stderr.read().strip()}")
        fs = Tmpfs(holder.pid, mount_point)
        for folder in ("tmp", "var/tmp", "var/log/app"):
            (fs.view / folder).mkdir(parents=True)
        yield fs
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_compressing_frees_space_at_once_when_the_quarantine_shares_the_filesystem(
    tmpfs: Tmpfs,
) -> None:
    root = tmpfs.view
    owner = (4242, 4343)
    text = {
        "/var/log/app/app.log.1": write_file(
            root / "var/log/app/app.log.1", log_text(6 << 20), age_days=10, mode=0o640, owner=owner
        ),
        "/tmp/report.csv": write_file(root / "tmp/report.csv", log_text(1 << 20), age_days=9),
    }
    packed = "/var/log/app/app.log.2.gz"
    packed_facts = write_file(
        root / packed.lstrip("/"), gzip.compress(log_text(4 << 20)), age_days=9
    )
    free_before = tmpfs.free()

    run = tmpfs.runbook(*quarantine_args(tmpfs.inside))

    free_after = tmpfs.free()
    assert run.exit_code == 0, run.stderr
    # Measured by statvfs, not computed: 7 MiB of text left the disk at once.
    assert free_after - free_before > 0.8 * (7 << 20)
    [filesystem] = run.summary["filesystems"]
    assert abs(filesystem["freed_now_measured"] - (free_after - free_before)) <= 64 << 10
    assert filesystem["used_percent_after"] < filesystem["used_percent_before"] - 35
    assert run.summary["files_compressed"] == 2
    assert run.summary["bytes_freed"] > 0.8 * (7 << 20)
    assert run.summary["bytes_freed_at_purge"] == run.summary["bytes_stored"]
    assert (
        f"filesystem of /tmp, /var/tmp, /var/log and the quarantine: "
        f"{filesystem['free_before'] / 1048576:.1f} MiB free before, "
        f"{filesystem['free_after'] / 1048576:.1f} MiB after" in run.stdout
    )
    line = moved_line(run, packed)
    assert "already compressed (gzip): frees nothing until the batch is purged" in line

    restore = tmpfs.runbook("disk-restore", "--root", str(tmpfs.inside))

    assert restore.exit_code == 0, restore.stderr
    for logical, facts in {**text, packed: packed_facts}.items():
        assert facts_of(root / logical.lstrip("/")) == facts, logical
    assert abs(tmpfs.free() - free_before) <= 64 << 10  # only the manifest is left


def test_a_target_usage_fails_the_run_while_the_filesystem_stays_too_full(
    tmpfs: Tmpfs,
) -> None:
    root = tmpfs.view
    old_log = "/var/log/app/app.log.1"
    facts = write_file(root / old_log.lstrip("/"), log_text(4 << 20), age_days=10)
    # The live log (never moved) keeps the 16 MiB filesystem over half full: 9 MiB.
    write_file(root / "var/log/app/app.log", os.urandom(9 << 20), age_days=0)
    target = ["--target-usage-percent"]

    too_full = tmpfs.runbook(*quarantine_args(tmpfs.inside, *target, "50"))

    assert too_full.exit_code == 1
    assert too_full.summary["result"] == "failed"
    [error] = too_full.stderr.strip().splitlines()
    assert error.startswith("failed: the filesystem of /tmp, /var/tmp, /var/log and the quarantine")
    assert "above the target of 50% (the files stay in the quarantine for disk-restore)" in error
    assert 50 < too_full.summary["filesystems"][0]["used_percent_after"] < 70
    assert not (root / old_log.lstrip("/")).exists()
    assert quarantined_path(root, "42", old_log).is_file()  # for the rollback

    rollback = tmpfs.runbook("disk-restore", "--root", str(tmpfs.inside))
    assert rollback.exit_code == 0, rollback.stderr
    assert facts_of(root / old_log.lstrip("/")) == facts

    met = tmpfs.runbook(*quarantine_args(tmpfs.inside, *target, "70"), execution_id="43")
    assert met.exit_code == 0, met.stderr
    assert met.summary["target_usage_percent"] == 70
    assert "% used, at most the target of 70%" in met.stdout
    assert "ok: the filesystem of /tmp, /var/tmp, /var/log and the quarantine is " in met.stdout

    nothing_left = tmpfs.runbook(*quarantine_args(tmpfs.inside, *target, "50"), execution_id="44")
    assert nothing_left.exit_code == 1
    assert "failed: nothing old enough to quarantine, and the filesystem of" in nothing_left.stderr
    # Without the option (the catalogue's argv) there is no such check.
    catalogue = tmpfs.runbook(*quarantine_args(tmpfs.inside), execution_id="45")
    assert catalogue.exit_code == 0, catalogue.stderr
    assert catalogue.summary["result"] == "nothing_to_do"


def test_with_no_space_for_a_compressed_copy_a_file_is_moved_as_it_is(tmpfs: Tmpfs) -> None:
    root = tmpfs.view
    old_log = "/var/log/app/app.log.1"
    facts = write_file(root / old_log.lstrip("/"), log_text(4 << 20), age_days=10)
    # Fill the disk but 64 KiB: room for the manifest, not for a compressed copy.
    write_file(root / "var/log/app/app.log", os.urandom(tmpfs.free() - (64 << 10)), age_days=0)

    run = tmpfs.runbook(*quarantine_args(tmpfs.inside))

    assert run.exit_code == 0, run.stderr
    assert (
        "rename; as is, no space left for a compressed copy: frees nothing until the batch is "
        "purged" in moved_line(run, old_log)
    )
    assert facts_of(quarantined_path(root, "42", old_log)) == facts
    assert not [path for path in root.rglob("*") if "warden-partial" in path.name]
    restore = tmpfs.runbook("disk-restore", "--root", str(tmpfs.inside))
    assert restore.exit_code == 0, restore.stderr
    assert facts_of(root / old_log.lstrip("/")) == facts


def test_across_filesystems_files_are_copied_verified_and_other_mounts_left_alone(
    host: Host,
) -> None:
    """The quarantine is a tmpfs (another filesystem): files are copied (or compressed),
    verified, unlinked, and the space is really freed; a tmpfs mounted inside /tmp is never
    entered."""
    require_mount_namespaces()
    mounted_file = "/tmp/other-fs/old.bin"
    script = f"""
set -e
mkdir -p {host.root}/var/lib/warden-agent {host.root}/tmp/other-fs
mount -t tmpfs tmpfs {host.root}/var/lib/warden-agent
mount -t tmpfs tmpfs {host.root}/tmp/other-fs
printf 'on another filesystem' > {host.root}{mounted_file}
touch -d '30 days ago' {host.root}{mounted_file}
"$PY" -m warden_agent.runbooks {" ".join(quarantine_args(host.root))} > {host.root}/../q.out
test ! -e {host.root}/tmp/big.bin
test -e {host.root}{mounted_file}
"$PY" -m warden_agent.runbooks disk-restore --root {host.root} > {host.root}/../r.out
"""
    env = {**runbook_env("42"), "PY": sys.executable}
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    quarantined = (host.root.parent / "q.out").read_text()
    summary = json.loads(quarantined.strip().splitlines()[-1])
    assert summary["files_moved"] == len(host.old)
    assert summary["bytes_freed"] == summary["bytes_moved"] > 2 * 1024 * 1024
    assert summary["files_compressed"] == len(host.compressible)
    assert "bytes, copy) sha256" in quarantined
    assert "/var/log/app/big.log.1 (293.0 KiB, gzip to " in quarantined
    assert "frees nothing" not in quarantined  # everything left the cleaned filesystem
    assert "left alone: /tmp/other-fs is another filesystem" in quarantined
    restored = json.loads((host.root.parent / "r.out").read_text().strip().splitlines()[-1])
    assert restored["files_restored"] == len(host.old)
    for logical, facts in host.old.items():
        assert facts_of(host.root / logical.lstrip("/")) == facts, logical
