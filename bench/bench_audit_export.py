"""Exporting a million-event audit trail: rate and memory, beside a floor, on real PostgreSQL.

A throwaway PostgreSQL gets Warden's schema and a million chained events (HMAC-linked as
Warden writes them, loaded with COPY). Then, each in its own process so peak memory is
its own:
- product: `manage.py export_audit --format F --output FILE` (the same stream() the API
  and the admin serve), for ndjson and csv;
- floor: psycopg alone, a server-side cursor over the same columns, each row written as
  one JSON line: no ORM, no filters (the design's cost table has no row for reading; this
  is the cheapest way to take the rows out in the same process arrangement);
- offline verification of the ndjson export (`verify_audit --file`).
Run: .venv/bin/python bench/bench_audit_export.py [EVENTS]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import PYTHON, ROOT, manage, throwaway_servers, warden_env

EVENTS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000

FILL = r"""
import io, json, sys, django
django.setup()
from datetime import timedelta
from django.db import connection
from django.utils import timezone
from governance.audit.log import GENESIS_HASH, chain_hash
from governance.models import AuditChainHead, AuditEvent
count = int(sys.argv[1])
start = timezone.now() - timedelta(days=30)
prev = GENESIS_HASH
buffer = io.StringIO()
def flush():
    buffer.seek(0)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(
            "COPY governance_auditevent (sequence, created_at, actor, action, object_type, "
            "object_id, ticket_id, summary, data, prev_hash, hash) FROM STDIN"
        ) as copy:
            copy.write(buffer.getvalue())
    buffer.seek(0); buffer.truncate()
for n in range(1, count + 1):
    row = AuditEvent(
        sequence=n, created_at=start + timedelta(seconds=n * 2), actor="system",
        action="execution.dispatched", object_type="Execution", object_id=str(n),
        ticket_id=f"INC-{n // 3:06d}",
        summary=f"dispatched clean_temp_and_rotate_logs to web-{n % 500:04d}'s agent",
        data={"state": "dispatched", "runbook": "clean-temp-and-rotate-logs"}, prev_hash=prev,
    )
    row.hash = prev = chain_hash(prev, row)
    fields = [str(n), row.created_at.isoformat(), row.actor, row.action, row.object_type,
              row.object_id, row.ticket_id, row.summary, json.dumps(row.data), row.prev_hash,
              row.hash]
    buffer.write("\t".join(f.replace("\\", "\\\\").replace("\t", "\\t") for f in fields) + "\n")
    if n % 50_000 == 0:
        flush()
flush()
AuditChainHead.objects.filter(pk=1).update(sequence=count, hash=prev)
"""

FLOOR = r"""
import json, sys, psycopg
url, out = sys.argv[1], sys.argv[2]
columns = ("sequence, created_at, actor, action, object_type, object_id, ticket_id, summary, "
           "data, prev_hash, hash")
names = [c.strip() for c in columns.split(",")]
with psycopg.connect(url) as conn, open(out, "w") as handle:
    with conn.cursor(name="export") as cursor:
        cursor.itersize = 2000
        cursor.execute(f"SELECT {columns} FROM governance_auditevent ORDER BY sequence")
        for row in cursor:
            item = dict(zip(names, row))
            item["created_at"] = item["created_at"].isoformat()
            handle.write(json.dumps(item, sort_keys=True) + "\n")
"""


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a child process; its wall time (s) and its own peak resident memory (MiB)."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=output, stderr=output)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            output.seek(0)
            raise SystemExit(f"{' '.join(args[:4])} failed:\n{output.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    with throwaway_servers("warden_audit_bench") as databases, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = warden_env(databases, work, DJANGO_SETTINGS_MODULE="config.settings")
        manage(env, "migrate", "-v0")
        started = time.perf_counter()
        subprocess.run([PYTHON, "-c", FILL, str(EVENTS)], cwd=ROOT, env=env, check=True)
        print(f"{EVENTS:,} chained events loaded in {time.perf_counter() - started:.0f} s")

        url = databases.database_url.replace("postgres://", "postgresql://")
        floor_s, floor_mb = timed([PYTHON, "-c", FLOOR, url, str(work / "floor.ndjson")], env)
        # Django's start (settings, apps, the model registry): what every command pays once.
        start_s, start_mb = timed(
            [PYTHON, "manage.py", "export_audit", "--after", str(EVENTS), "--output", os.devnull],
            env,
        )
        rows = []
        for fmt in ("ndjson", "csv"):
            out = work / f"audit.{fmt}"
            seconds, peak = timed(
                [PYTHON, "manage.py", "export_audit", "--format", fmt, "--output", str(out)], env
            )
            rows.append((fmt, seconds, peak, out.stat().st_size))
        verify_s, verify_mb = timed(
            [PYTHON, "manage.py", "verify_audit", "--file", str(work / "audit.ndjson")], env
        )

        print(f"\n| {'what':34} | events/s | seconds | peak RSS |")
        print(f"|{'-' * 36}|----------|---------|----------|")
        print(
            f"| {'floor: psycopg cursor -> JSON lines':34} | {EVENTS / floor_s:8,.0f} "
            f"| {floor_s:7.1f} | {floor_mb:5.0f} MiB |"
        )
        print(
            f"| {'export_audit of nothing (start-up)':34} | {'-':>8} "
            f"| {start_s:7.1f} | {start_mb:5.0f} MiB |"
        )
        for fmt, seconds, peak, size in rows:
            print(
                f"| {'export_audit --format ' + fmt:34} | {EVENTS / seconds:8,.0f} "
                f"| {seconds:7.1f} | {peak:5.0f} MiB |  {size / 2**20:.0f} MiB file; without "
                f"start-up {EVENTS / (seconds - start_s):,.0f} events/s, "
                f"{(seconds - start_s) / floor_s:.2f}x the floor's time, "
                f"+{peak - start_mb:.0f} MiB over start-up"
            )
        print(
            f"| {'verify_audit --file (ndjson)':34} | {EVENTS / verify_s:8,.0f} "
            f"| {verify_s:7.1f} | {verify_mb:5.0f} MiB |"
        )
        print(json.dumps({"events": EVENTS, "floor_s": floor_s, "export": rows}))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
