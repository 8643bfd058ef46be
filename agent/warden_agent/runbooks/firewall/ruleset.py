"""nft-apply and nft-revert: change the whole ruleset from a reviewed file, and back.

nft-apply checks the file with `nft -c`, saves the current ruleset (and checks it could be
restored) for nft-revert, applies the file and checks every table it declares is there.
nft-revert restores the snapshot in one transaction (flush ruleset, then the snapshot) when
it is the one the recorded change saved.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ..common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    Context,
    Failed,
    Refused,
    ensure_state_dir,
    now_iso,
    read_json,
    sha256_bytes,
    state_file,
    write_atomic,
    write_json_atomic,
)

DECLARED_TABLE = re.compile(r"^\s*(?:add\s+|create\s+)?table\s+(?:(\w+)\s+)?([\w.-]+)", re.M)


def _nft_state(ctx: Context, name: str) -> Path:
    return state_file(ctx, "nft", name)


def list_ruleset(ctx: Context, *, stateless: bool) -> str:
    argv = ["nft", "-s", "list", "ruleset"] if stateless else ["nft", "list", "ruleset"]
    result = ctx.query(argv)
    if not result.ok:
        raise Failed(f"nft list ruleset failed: {result.first_error_line()}")
    return result.stdout


def restore_script(snapshot: str) -> str:
    return "flush ruleset\n" + snapshot


def check_file(ctx: Context, path: Path) -> str | None:
    result = ctx.query(["nft", "-c", "-f", str(path)])
    return None if result.ok else result.first_error_line()


def nft_apply(args: argparse.Namespace, ctx: Context) -> str:
    logical: str = args.file
    change_file = ctx.path(logical)
    content, file_sha = _checked_change_file(ctx, logical, change_file)

    state_path = _nft_state(ctx, "change.json")
    recorded = read_json(state_path)
    current_stateless = list_ruleset(ctx, stateless=True)
    current_sha = sha256_bytes(current_stateless.encode())
    if (
        recorded
        and recorded.get("file_sha256") == file_sha
        and recorded.get("applied_ruleset_sha256") == current_sha
    ):
        ctx.line(f"nothing to do: {logical} (sha256 {file_sha}) is applied and unchanged since")
        return NOTHING_TO_DO

    # An interrupted earlier run of this same change keeps its snapshot (it is the one from
    # before the change); otherwise the current ruleset becomes the one nft-revert restores.
    snapshot = _nft_state(ctx, "snapshot.nft")
    keep_snapshot = bool(
        recorded
        and recorded.get("status") == "applying"
        and recorded.get("file_sha256") == file_sha
        and snapshot.is_file()
    )
    snapshot_text = snapshot.read_text() if keep_snapshot else _restorable_ruleset(ctx, recorded)

    ctx.line(f"change file {logical} sha256 {file_sha}:")
    for line in content.decode("utf-8", errors="replace").splitlines():
        ctx.line(f"  | {line}")
    if ctx.dry_run:
        if not keep_snapshot:
            ctx.line(f"would save the current ruleset to {snapshot} for nft-revert")
        ctx.change(["nft", "-f", str(change_file)])
        return DRY_RUN

    if not keep_snapshot:
        ensure_state_dir(ctx, "nft")
        write_atomic(snapshot, snapshot_text.encode())
        write_atomic(_nft_state(ctx, "snapshot.stateless.nft"), current_stateless.encode())
        ctx.line(f"saved the current ruleset to {snapshot} for nft-revert")
    record = {
        "file": logical,
        "file_sha256": file_sha,
        "snapshot_sha256": sha256_bytes(snapshot_text.encode()),
        "status": "applying",
        "execution_id": ctx.execution_id,
        "at": now_iso(),
    }
    return _apply_recorded(ctx, change_file, content, state_path, record)


def _checked_change_file(ctx: Context, logical: str, change_file: Path) -> tuple[bytes, str]:
    """Pre-check: the change file is a file nft accepts. Returns its content and SHA-256."""
    ctx.require_tool("nft")
    if not change_file.is_file():
        raise Refused(f"{logical} is not a file")
    content = change_file.read_bytes()
    file_sha = sha256_bytes(content)
    ctx.out.details.update(file=logical, file_sha256=file_sha)
    if problem := check_file(ctx, change_file):
        raise Refused(f"nft does not accept {logical}: {problem}")
    ctx.line(f"check: nft accepts {logical}")
    return content, file_sha


def _restorable_ruleset(ctx: Context, recorded: dict[str, Any] | None) -> str:
    """The current ruleset, to save for nft-revert, once nft confirms it could restore it."""
    snapshot_text = list_ruleset(ctx, stateless=False)
    # Pre-check: what we would restore can be restored, or the change is not reversible.
    probe = ctx.query(["nft", "-c", "-f", "-"], stdin=restore_script(snapshot_text))
    if not probe.ok:
        raise Refused(
            f"the current ruleset could not be restored by nft-revert: {probe.first_error_line()}"
        )
    if recorded and not ctx.dry_run:
        ctx.line(
            f"the earlier change {recorded.get('file')} (sha256 "
            f"{recorded.get('file_sha256')}) stays; nft-revert now returns to the ruleset "
            f"as it is now"
        )
    return snapshot_text


def _apply_recorded(
    ctx: Context, change_file: Path, content: bytes, state_path: Path, record: dict[str, Any]
) -> str:
    """Apply the change file with its record on disk first, then check its tables are there."""
    logical = record["file"]
    write_json_atomic(state_path, record)
    result = ctx.change(["nft", "-f", str(change_file)])
    assert result is not None
    if not result.ok:
        record["status"] = "failed"
        write_json_atomic(state_path, record)
        raise Failed(f"nft -f {logical} failed: {result.first_error_line()}")

    # Post-check: the ruleset lists, and every table the file declares is in it.
    applied = list_ruleset(ctx, stateless=True)
    missing = [
        f"{family or 'ip'} {name}"
        for family, name in DECLARED_TABLE.findall(content.decode("utf-8", errors="replace"))
        if not re.search(rf"^table {family or 'ip'} {re.escape(name)} ", applied, re.M)
    ]
    if missing:
        raise Failed(f"after nft -f, the ruleset lacks table {missing[0]} declared by {logical}")
    record.update(status="applied", applied_ruleset_sha256=sha256_bytes(applied.encode()))
    write_json_atomic(state_path, record)
    ctx.line(f"ok: applied {logical}; nft-revert restores the saved ruleset")
    return DONE


def nft_revert(args: argparse.Namespace, ctx: Context) -> str:
    state_path = _nft_state(ctx, "change.json")
    recorded = read_json(state_path)
    if recorded is None:
        ctx.line("nothing to do: no applied firewall change is recorded")
        return NOTHING_TO_DO
    ctx.out.details.update(file=recorded.get("file"), file_sha256=recorded.get("file_sha256"))
    applied_by = recorded.get("execution_id")
    if ctx.execution_id and applied_by and applied_by != ctx.execution_id:
        # A later change replaced the snapshot: restoring it would undo that change instead.
        raise Refused(
            f"the recorded change was applied by execution {applied_by}, not "
            f"{ctx.execution_id}; reverting it would undo that change"
        )
    ctx.require_tool("nft")
    snapshot = _nft_state(ctx, "snapshot.nft")
    stateless_snapshot = _nft_state(ctx, "snapshot.stateless.nft")
    try:
        snapshot_text = snapshot.read_text()
        expected = stateless_snapshot.read_text()
    except OSError as error:
        raise Refused(f"the saved ruleset is missing: {error}") from error
    if sha256_bytes(snapshot_text.encode()) != recorded.get("snapshot_sha256"):
        raise Refused(f"{snapshot} changed since it was saved (SHA-256 differs)")
    script = restore_script(snapshot_text)
    probe = ctx.query(["nft", "-c", "-f", "-"], stdin=script)
    if not probe.ok:
        raise Refused(f"nft does not accept the saved ruleset: {probe.first_error_line()}")

    state_files = [state_path, snapshot, stateless_snapshot]
    if list_ruleset(ctx, stateless=True) == expected:
        ctx.line("the ruleset already matches the one saved before the change")
        if not ctx.dry_run:
            _remove(state_files)
            ctx.line("removed the saved ruleset")
        return NOTHING_TO_DO
    ctx.line(
        f"restoring the ruleset saved at {recorded.get('at')} before {recorded.get('file')} "
        f"(sha256 {recorded.get('snapshot_sha256')}), in one transaction"
    )
    if ctx.dry_run:
        ctx.line(f"would run: nft -f - (flush ruleset, then {snapshot})")
        return DRY_RUN
    result = ctx.change(["nft", "-f", "-"], stdin=script, echo_output=True)
    assert result is not None
    if not result.ok:
        raise Failed(f"nft refused the saved ruleset: {result.first_error_line()}")
    if list_ruleset(ctx, stateless=True) != expected:
        raise Failed("after the restore the ruleset differs from the one saved")
    _remove(state_files)
    ctx.line("ok: the ruleset is back to the one saved before the change")
    return DONE


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
