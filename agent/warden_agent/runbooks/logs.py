"""rotate-logs: force one logrotate configuration now.

The paths inside the configuration are logrotate's own business (it reads them as written);
--root prefixes only the configuration file and the state file this runbook passes to it.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

from .common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    Context,
    Failed,
    Refused,
    already_done,
    human_bytes,
    make_private_dirs,
    mark_done,
)

RUNBOOK = "rotate-logs"
CONSIDERING = re.compile(r"^considering log (.+)$")


@dataclass(frozen=True)
class LogFile:
    path: str
    size: int
    inode: int


def rotate_logs(args: argparse.Namespace, ctx: Context) -> str:
    config_logical: str = args.config
    config = ctx.path(config_logical)
    state_logical = args.state_file or f"{ctx.state_dir_logical.rstrip('/')}/logrotate.status"
    state = ctx.path(state_logical)
    ctx.out.details.update(config=config_logical, state_file=state_logical)

    # Pre-check: logrotate is there and parses the configuration without an error.
    ctx.require_tool("logrotate")
    if not config.is_file():
        raise Refused(f"{config_logical} is not a file")
    debug = ctx.query(["logrotate", "--debug", "--state", str(state), str(config)])
    lines = (debug.stderr + "\n" + debug.stdout).splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    if not debug.ok or errors:
        reason = errors[0] if errors else debug.first_error_line()
        raise Refused(f"logrotate does not accept {config_logical}: {reason}")
    considered = [m.group(1) for m in map(CONSIDERING.match, lines) if m]
    if not considered:
        raise Refused(f"{config_logical} names no log file")
    ctx.line(f"check: logrotate accepts {config_logical} ({len(considered)} logs)")

    marks = {"config": config_logical, "state": state_logical}
    if (when := already_done(ctx, RUNBOOK, marks)) is not None:
        ctx.line(f"nothing to do: this execution already rotated {config_logical} at {when}")
        return NOTHING_TO_DO

    before = {path: found for path in considered if (found := _log_file(path)) is not None}
    to_rotate = {path: log for path, log in before.items() if log.size > 0}
    for path in considered:
        log = before.get(path)
        described = "missing" if log is None else human_bytes(log.size)
        ctx.line(f"log {path}: {described}")
    if not to_rotate:
        ctx.line("nothing to do: every log in the configuration is empty or missing")
        return NOTHING_TO_DO

    argv = ["logrotate", "--force", "--state", str(state), str(config)]
    if ctx.dry_run:
        ctx.change(argv)
        ctx.out.details.update(logs_to_rotate=sorted(to_rotate))
        return DRY_RUN
    make_private_dirs(state.parent)
    result = ctx.change(argv)
    assert result is not None
    if not result.ok:
        raise Failed(f"logrotate failed: {result.first_error_line()}")

    # Post-check: each log that had content was moved away, replaced or truncated.
    not_rotated = []
    for path, old in to_rotate.items():
        now = _log_file(path)
        if now is not None and now.inode == old.inode and now.size >= old.size:
            not_rotated.append(path)
        else:
            ctx.line(f"rotated {path} ({human_bytes(old.size)})")
    ctx.out.details.update(logs_rotated=sorted(set(to_rotate) - set(not_rotated)))
    if not_rotated:
        raise Failed(f"logrotate ran but did not rotate {', '.join(sorted(not_rotated))}")
    mark_done(ctx, RUNBOOK, marks)
    return DONE


def _log_file(path: str) -> LogFile | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return LogFile(path, st.st_size, st.st_ino)
