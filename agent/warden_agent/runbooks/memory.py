"""drop-caches: write dirty pages out, then ask the kernel to drop clean caches.

Dropping caches loses no data (sync runs first); it only makes the next reads slower while
the cache warms again. It frees memory the kernel would give back on its own under pressure,
so it helps when something measures "used" memory including caches.
"""

from __future__ import annotations

import argparse
import os

from .common import (
    DONE,
    DRY_RUN,
    NOTHING_TO_DO,
    Context,
    Failed,
    Refused,
    already_done,
    mark_done,
)

DROP_CACHES = "/proc/sys/vm/drop_caches"
MEMINFO = "/proc/meminfo"


def mem_available_kib(ctx: Context) -> int | None:
    try:
        text = ctx.path(MEMINFO).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "MemAvailable":
            fields = value.split()
            return int(fields[0]) if fields and fields[0].isdigit() else None
    return None


def drop_caches(args: argparse.Namespace, ctx: Context) -> str:
    target = ctx.path(DROP_CACHES)
    if not target.exists():
        raise Refused(f"{DROP_CACHES} does not exist (not Linux, or /proc is not mounted)")
    if not os.access(target, os.W_OK):
        raise Refused(f"{DROP_CACHES} is not writable (needs root, and /proc/sys not read-only)")
    if (when := already_done(ctx, "drop-caches", {})) is not None:
        ctx.line(f"nothing to do: this execution already dropped the caches at {when}")
        return NOTHING_TO_DO
    before = mem_available_kib(ctx)
    if before is not None:
        ctx.line(f"MemAvailable before: {before // 1024} MiB")
    if ctx.dry_run:
        ctx.line(f"would run sync, then write 3 to {DROP_CACHES}")
        return DRY_RUN

    ctx.line("sync")
    os.sync()
    ctx.line(f"write 3 to {DROP_CACHES}")
    try:
        # No O_CREAT: the file must be the kernel's, never one this creates.
        fd = os.open(target, os.O_WRONLY | os.O_TRUNC)
        try:
            written = os.write(fd, b"3\n")
        finally:
            os.close(fd)
    except OSError as error:
        raise Failed(f"the kernel refused the write to {DROP_CACHES}: {error.strerror}") from error
    # Post-check: the kernel took the whole value (a partial write means it did not).
    if written != 2:
        raise Failed(f"only {written} of 2 bytes were written to {DROP_CACHES}")
    after = mem_available_kib(ctx)
    if after is not None:
        ctx.line(f"MemAvailable after: {after // 1024} MiB")
    if before is not None and after is not None:
        ctx.out.details.update(
            mem_available_kib_before=before,
            mem_available_kib_after=after,
            mem_available_kib_gained=after - before,
        )
    mark_done(ctx, "drop-caches", {})
    return DONE
