"""What appending to the audit log costs per transaction: the price every ticket pays.

Runs in one process on a throwaway database: SQLite in a temporary data folder, or the
PostgreSQL DATABASE_URL names (its tables are migrated, and the log it holds is kept).
Each transaction appends BATCH events about one row, as a use case does; the median and
the 95th percentile per transaction are printed.
Run: .venv/bin/python bench/bench_audit_append.py [TRANSACTIONS] [BATCH]
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRANSACTIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def main() -> None:
    if not os.environ.get("DATABASE_URL"):
        os.environ["WARDEN_DATA_DIR"] = tempfile.mkdtemp(prefix="warden-append-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from governance.audit.log import append_events, event

    call_command("migrate", verbosity=0)

    class Subject:  # not a governed row: no state digest to read
        pk = 1

    subject = Subject()
    timings = []
    for n in range(TRANSACTIONS):
        pending = [
            event(
                "system",
                "ticket.changed",
                subject,
                f"bench {n}.{i}",
                ticket_id="INC-1",
                data={"n": n, "i": i, "reason": "bench", "fields": ["status"]},
            )
            for i in range(BATCH)
        ]
        started = time.perf_counter()
        with transaction.atomic():
            append_events(pending)
        timings.append(time.perf_counter() - started)
    # What signing added to each append: the record's leaf, computed once per event.
    from governance.audit.log import event_record
    from governance.audit.verifier import RECORD_FIELDS, leaf_hash
    from governance.models import AuditEvent

    rows = list(AuditEvent.objects.order_by("-sequence")[:1000])
    started = time.perf_counter()
    for row in rows:
        leaf_hash(event_record(row, RECORD_FIELDS))
    leaf_us = (time.perf_counter() - started) / len(rows) * 1e6
    timings.sort()
    median = statistics.median(timings) * 1000
    p95 = timings[int(len(timings) * 0.95)] * 1000
    print(
        f"{connection.vendor}: {TRANSACTIONS} transactions of {BATCH} events: "
        f"median {median:.3f} ms, p95 {p95:.3f} ms per transaction; "
        f"a record's leaf hash {leaf_us:.1f} us"
    )


if __name__ == "__main__":
    main()
