"""Readings kept as long as configured, and no longer, each removal audited.

Raw samples are kept WARDEN_SAMPLE_RETENTION_DAYS, their minute summaries (what the
console, drift and a host's page read) WARDEN_MINUTE_RETENTION_DAYS. The worker runs
`apply_retention` every hour (the `warden-retention` schedule, scoring.tasks):

- on PostgreSQL it makes the partitions of the coming days (scoring.partitions) and drops
  each partition whose whole period is past its table's keeping period, one transaction a
  partition, with an audit event naming the period and how many rows went;
- on SQLite it deletes what is past the period in batches of PRUNE_BATCH rows, one short
  transaction each, so the web server's writes wait for a batch, never for the whole
  prune; one audit event a table says how many rows and before when.

A decision keeps the id of the sample it was made on (governance's Decision.sample);
when that sample goes, the decision's link is emptied in the same transaction, as the
foreign key's SET_NULL says, and the decision keeps its own record of what it read.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from governance.audit.log import PendingEvent, append_events
from governance.models import Decision
from scoring.models import MetricSample, SampleMinute
from scoring.partitions import (
    MINUTES,
    SAMPLES,
    Partition,
    PartitionedTable,
    attached,
    create_partitions,
    drop_partition,
    expired,
    partitioned,
)

ACTOR = "system:retention"
# Partitions are made this much further ahead than an agent's clock may run
# (WARDEN_CLOCK_AHEAD_LIMIT_SECONDS): a worker stopped for less than this loses nothing.
MADE_AHEAD = timedelta(days=7)
PRUNE_BATCH = 5000

MODELS = {SAMPLES.table: MetricSample, MINUTES.table: SampleMinute}
WHAT = {SAMPLES.table: "samples", MINUTES.table: "minute summaries"}


def kept_days(table: PartitionedTable) -> int:
    if table is SAMPLES:
        return settings.WARDEN_SAMPLE_RETENTION_DAYS
    return settings.WARDEN_MINUTE_RETENTION_DAYS


def cutoff(table: PartitionedTable, now: datetime) -> datetime:
    """Rows of `table` older than this are past their keeping period. A minute summary is
    kept at least as long as a sample that could still be merged into it: a kept sample's
    minute is its stamp corrected by its host's clock, up to a clock's ahead limit earlier."""
    if table is SAMPLES:
        return now - timedelta(days=kept_days(table))
    ahead = timedelta(seconds=settings.WARDEN_CLOCK_AHEAD_LIMIT_SECONDS)
    return min(now - timedelta(days=kept_days(table)), cutoff(SAMPLES, now) - ahead)


def oldest_accepted(now: datetime) -> datetime:
    """The oldest reading the API takes: an older one would land past the keeping period
    (on PostgreSQL, in a partition already dropped)."""
    return cutoff(SAMPLES, now)


def wanted_partitions(table: PartitionedTable, now: datetime) -> list[Partition]:
    """The partitions `table` needs at `now`: from its cutoff to well past the furthest
    an agent's clock may be ahead."""
    ahead = timedelta(seconds=settings.WARDEN_CLOCK_AHEAD_LIMIT_SECONDS) + MADE_AHEAD
    return table.partitions(cutoff(table, now), now + ahead)


@dataclass
class RetentionRun:
    """What one run did: partitions made, and per table what went (partition or batch
    prune -> rows)."""

    made: list[str] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)


def apply_retention(now: datetime) -> RetentionRun:
    """Make the coming partitions and remove what is past its keeping period, audited."""
    run = RetentionRun()
    for table in (SAMPLES, MINUTES):
        if partitioned():
            with transaction.atomic():
                made = create_partitions(table, wanted_partitions(table, now))
            run.made += [partition.name for partition in made]
            for partition in expired(attached(table), cutoff(table, now)):
                run.removed[partition.name] = drop_expired(table, partition, now)
        else:
            rows = prune(table, now)
            if rows:
                run.removed[table.table] = rows
    return run


def drop_expired(table: PartitionedTable, partition: Partition, now: datetime) -> int:
    """Drop one partition past its period with its audit event; returns its rows."""
    with transaction.atomic():
        if table is SAMPLES:
            Decision.objects.filter(
                sample_id__in=MetricSample.objects.filter(
                    taken_at__gte=partition.start, taken_at__lt=partition.end
                ).values("pk")
            ).update(sample=None)
        rows = drop_partition(table, partition)
        append_events(
            [
                removal_event(
                    table,
                    partition.name,
                    f"{rows} {WHAT[table.table]} of {partition.start:%Y-%m-%d} to "
                    f"{partition.end - timedelta(seconds=1):%Y-%m-%d} dropped",
                    now,
                    rows=rows,
                    period={"from": partition.start, "to": partition.end},
                )
            ]
        )
    return rows


def prune(table: PartitionedTable, now: datetime) -> int:
    """Delete `table`'s rows past their period in batches (SQLite); returns how many,
    with one audit event if any went."""
    model, before = MODELS[table.table], cutoff(table, now)
    old = model.objects.filter(**{f"{table.column}__lt": before}).order_by()
    rows = 0
    while True:
        with transaction.atomic():
            batch = list(old.values_list("pk", flat=True)[:PRUNE_BATCH])
            if not batch:
                break
            # Decisions pointing at the samples lose the link (SET_NULL) in the same delete.
            model.objects.filter(pk__in=batch).delete()
            rows += len(batch)
    if rows:
        with transaction.atomic():
            append_events(
                [
                    removal_event(
                        table,
                        f"before {before.isoformat()}",
                        f"{rows} {WHAT[table.table]} taken before {before:%Y-%m-%d %H:%M} pruned",
                        now,
                        rows=rows,
                        period={"to": before},
                    )
                ]
            )
    return rows


def removal_event(
    table: PartitionedTable, object_id: str, summary: str, now: datetime, **data: object
) -> PendingEvent:
    days = kept_days(table)
    return PendingEvent(
        actor=ACTOR,
        action="retention.dropped" if partitioned() else "retention.pruned",
        object_type=MODELS[table.table].__name__,
        object_id=object_id,
        summary=f"{summary}: kept {days} days",
        data={
            "table": table.table,
            "kept_days": days,
            "cutoff": cutoff(table, now).isoformat(),
            **{
                key: {k: v.isoformat() for k, v in value.items()}
                if isinstance(value, dict)
                else value
                for key, value in data.items()
            },
        },
    )
