"""Samples and their minute summaries partitioned by time on PostgreSQL.

Each table is a declarative range partition set in UTC: samples one partition a day of
`taken_at`, minute summaries one a week (from Monday) of `minute`. Partitions are made
ahead by the worker (scoring.retention) and dropped whole once all of their period is
older than the table's keeping period: no row-by-row DELETE, no vacuum of the gap.

Why `taken_at` (the agent's stamp) and not when the server received the sample: a
partitioned table's unique keys must include the partition key, and the rule that a
resent sample is stored once is the unique host and `taken_at`. By `received_at` that key
would have to name the receipt too, and a resend (received later) would slip through. The
API keeps `taken_at` in bounds, so a partition always waits for it: no later than
WARDEN_CLOCK_AHEAD_LIMIT_SECONDS ahead (partitions are made further ahead than that), and
no older than the keeping period (remediation.api.batches). If the worker has not made
one (stopped for over a week), ingest makes it (ensure_partitions).

SQLite (the embedded mode) keeps plain tables; retention deletes there in batches.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction

# A creation or a drop waits for its locks this many times the server's deadlock_timeout,
# then gives up until the next run: ingest queues behind a waiting lock, so it must not wait
# long. But autovacuum, at work on a partition or on a table the partitions refer to (a
# creation locks hosts, tickets and model versions against changes), yields only to a
# waiter that has waited deadlock_timeout (1 s by default): one that gave up at that same
# second never outlasted an autovacuum, and on a busy fleet the hosts table is vacuumed often.
LOCK_WAIT_DEADLOCK_TIMEOUTS = 2

# How many rows ANALYZE reads of a partition: 300 x this (PostgreSQL's default target is
# 100, 30,000 rows). The partition being written grows fast on a busy fleet, so autovacuum
# analyzes it every minute or two; at 10,000 hosts each analyze of the day's samples and of
# the week's summaries took about 0.3 s of CPU, and the posts arriving then queued behind
# it (bench/fleet_simulation.py). A day of readings has the same shape all day: the planner
# needs its proportions, which 3,000 rows give as well.
STATISTICS_TARGET = 10


@dataclass(frozen=True)
class PartitionedTable:
    table: str
    column: str
    span_days: int  # 1: a partition a day; 7: a week from Monday

    def period_start(self, instant: datetime) -> datetime:
        """The start (UTC midnight) of the partition period holding `instant`."""
        day = instant.astimezone(UTC).date()
        first = day.toordinal() - (day.toordinal() - 1) % self.span_days  # ordinal 1: a Monday
        return datetime.combine(date.fromordinal(first), time(), UTC)

    def partition(self, instant: datetime) -> "Partition":
        """The partition that holds `instant`."""
        start = self.period_start(instant)
        return Partition(
            f"{self.table}_p{start:%Y%m%d}", start, start + timedelta(days=self.span_days)
        )

    def partitions(self, since: datetime, until: datetime) -> list["Partition"]:
        """The partitions covering [since, until], oldest first."""
        found, start = [], self.period_start(since)
        while start <= until:
            found.append(self.partition(start))
            start += timedelta(days=self.span_days)
        return found


@dataclass(frozen=True, order=True)
class Partition:
    name: str
    start: datetime  # inclusive
    end: datetime  # exclusive

    @property
    def bounds(self) -> str:
        """Its FOR VALUES clause (DDL takes no parameters; both are UTC datetimes)."""
        return f"FOR VALUES FROM ('{self.start.isoformat()}') TO ('{self.end.isoformat()}')"


SAMPLES = PartitionedTable("scoring_metricsample", "taken_at", 1)
MINUTES = PartitionedTable("scoring_sampleminute", "minute", 7)
TABLES = (SAMPLES, MINUTES)


def partitioned() -> bool:
    """Are the tables partitioned here (PostgreSQL), or plain (SQLite)?"""
    return connection.vendor == "postgresql"


def expired(partitions: Iterable[Partition], cutoff: datetime) -> list[Partition]:
    """Those whose whole period is older than `cutoff`, oldest first."""
    return sorted(p for p in partitions if p.end <= cutoff)


def attached(table: PartitionedTable) -> list[Partition]:
    """The table's partitions in the database, oldest first (read from their names)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table.table],
        )
        names = [name for (name,) in cursor.fetchall()]
    return sorted(
        table.partition(datetime.strptime(name.rsplit("_p", 1)[1], "%Y%m%d").replace(tzinfo=UTC))
        for name in names
    )


def create_partitions(table: PartitionedTable, wanted: Sequence[Partition]) -> list[Partition]:
    """Make those of `wanted` the table lacks; returns them. Each is made empty beside the
    table and attached to it, which locks the table only against other changes of its
    structure, not against reads and inserts (CREATE TABLE ... PARTITION OF would)."""
    present = set(attached(table))
    made = []
    for partition in wanted:
        if partition in present:
            continue
        quoted = connection.ops.quote_name(partition.name)
        with connection.cursor() as cursor:
            wait_for_locks_briefly(cursor)
            cursor.execute(
                f"CREATE TABLE {quoted} (LIKE {table.table} INCLUDING DEFAULTS "
                "INCLUDING CONSTRAINTS INCLUDING STORAGE)"
            )
            sample_less(cursor, partition.name)
            cursor.execute(
                f"ALTER TABLE {table.table} ATTACH PARTITION {quoted} {partition.bounds}"
            )
        made.append(partition)
    return made


def wait_for_locks_briefly(cursor: Any) -> None:
    """For the rest of the transaction, wait LOCK_WAIT_DEADLOCK_TIMEOUTS x deadlock_timeout
    for a lock, then fail."""
    cursor.execute(
        "SELECT set_config('lock_timeout', (extract(epoch FROM "
        "current_setting('deadlock_timeout')::interval) * 1000 * %s)::int::text, true)",
        [LOCK_WAIT_DEADLOCK_TIMEOUTS],
    )


def sample_less(cursor: Any, partition: str, target: int = STATISTICS_TARGET) -> None:
    """Give each column of `partition` the statistics target `target` (-1: the default)."""
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        [partition],
    )
    quote = connection.ops.quote_name
    columns = [quote(name) for (name,) in cursor.fetchall()]
    changes = ", ".join(f"ALTER COLUMN {column} SET STATISTICS {int(target)}" for column in columns)
    cursor.execute(f"ALTER TABLE {quote(partition)} {changes}")


# Partitions this process has seen attached, per database: ingest checks a batch's periods
# here and asks PostgreSQL only about one it has not seen (once a day per process). One it
# made itself counts once its transaction commits: a rollback takes the partition away. A
# drop forgets it; another process drops only partitions older than any reading accepted.
_known: dict[str, set[Partition]] = {}
_made_uncommitted: dict[str, set[Partition]] = {}


def ensure_partitions(table: PartitionedTable, instants: Iterable[datetime]) -> list[Partition]:
    """Make, in the caller's transaction, the partitions of `table` that `instants` need and
    it lacks; returns those made. The worker makes them a week ahead (scoring.retention), so
    this makes one only when the worker was stopped longer than that: a reading waits for no
    worker. Two requests making the same one: the second waits for the first's commit, then
    finds it made."""
    database = connection.settings_dict["NAME"]
    known = _known.setdefault(database, set())
    # A batch's readings fall on a day or two: a partition per distinct UTC day, not per reading.
    days = {int(instant.timestamp() // 86400) for instant in instants}
    needed = {table.partition(datetime.fromtimestamp(day * 86400, UTC)) for day in days} - known
    if not needed:
        return []
    uncommitted = _made_uncommitted.setdefault(database, set())
    present = set(attached(table))
    known.update(present - uncommitted)
    made = []
    for partition in sorted(needed - present):
        try:
            with transaction.atomic():
                made += create_partitions(table, [partition])
        except DatabaseError:
            if partition not in attached(table):
                raise
            known.add(partition)  # another process made it, and committed
            continue
        finally:
            with connection.cursor() as cursor:  # the caller's work waits as it would have
                cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
        uncommitted.add(partition)
        transaction.on_commit(lambda partition=partition: _committed(database, partition))
    return made


def _committed(database: str, partition: Partition) -> None:
    _made_uncommitted[database].discard(partition)
    _known[database].add(partition)


def drop_partition(table: PartitionedTable, partition: Partition) -> int:
    """Drop `partition` (in the caller's transaction); returns how many rows it held."""
    _known.get(connection.settings_dict["NAME"], set()).discard(partition)
    quoted = connection.ops.quote_name(partition.name)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ONLY {quoted}")
        (rows,) = cursor.fetchone()
        wait_for_locks_briefly(cursor)
        # A drop is refused while rows this transaction wrote wait for their deferred
        # foreign-key checks (the worker's own transaction has none): check them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP TABLE {quoted}")
    return rows


def _definitions(cursor: Any, name: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The table's own constraints (name, kind, definition) and its other indexes, as DDL
    to make them again on the table rebuilt under the same name."""
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND conparentid = 0 ORDER BY contype, conname",
        [name],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass "
        "AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conrelid = "
        "%s::regclass)",
        [name, name],
    )
    # A partitioned table's own index reads "ON ONLY": a plain table's has no ONLY.
    return constraints, [d.replace(" ON ONLY ", " ON ", 1) for (d,) in cursor.fetchall()]


def partition_table(table: PartitionedTable, since: datetime, until: datetime) -> None:
    """Turn the plain `table` into one partitioned by its column, keeping every row, id,
    index, constraint and name: a migration's step (PostgreSQL only).

    The primary key becomes (id, column), as a partitioned table's keys must include the
    column; its ids keep coming from a sequence (PostgreSQL 15 has no identity column on a
    partitioned table). Partitions cover [since, until] and every stored row's period.
    """
    name, column = table.table, table.column
    old = f"{name}_unpartitioned"
    with connection.cursor() as cursor:
        constraints, indexes = _definitions(cursor, name)
        cursor.execute(f"SELECT min({column}), max({column}), max(id) FROM {name}")
        first, last, last_id = cursor.fetchone()
        cursor.execute(f"ALTER TABLE {name} RENAME TO {old}")
        cursor.execute(f"CREATE TABLE {name} (LIKE {old}) PARTITION BY RANGE ({column})")
        cursor.execute(f"ALTER TABLE {name} ALTER COLUMN id DROP IDENTITY IF EXISTS")
        for partition in table.partitions(min(first or since, since), max(last or until, until)):
            cursor.execute(f"CREATE TABLE {partition.name} PARTITION OF {name} {partition.bounds}")
            sample_less(cursor, partition.name)
        cursor.execute(f"INSERT INTO {name} SELECT * FROM {old}")
        cursor.execute(f"DROP TABLE {old}")
        cursor.execute(f"CREATE SEQUENCE {name}_id_seq OWNED BY {name}.id")
        cursor.execute(f"ALTER TABLE {name} ALTER COLUMN id SET DEFAULT nextval('{name}_id_seq')")
        cursor.execute(
            f"SELECT setval('{name}_id_seq', %s, %s)", [last_id or 1, last_id is not None]
        )
        for constraint, kind, definition in constraints:
            if kind == "p":
                definition = f"PRIMARY KEY (id, {column})"
            elif kind == "u" and column not in definition:
                raise ValueError(f"{constraint} must include {column} to be kept on {name}")
            cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {constraint} {definition}")
        for definition in indexes:
            cursor.execute(definition)


def unpartition_table(table: PartitionedTable) -> None:
    """partition_table undone: the partitioned `table` back to one plain table with every
    row, id, index, constraint and name, its primary key the id alone and its ids an
    identity again (a migration's step back, PostgreSQL only)."""
    name = table.table
    old = f"{name}_partitioned"
    with connection.cursor() as cursor:
        constraints, indexes = _definitions(cursor, name)
        cursor.execute(f"SELECT max(id) FROM {name}")
        (last_id,) = cursor.fetchone()
        cursor.execute(f"ALTER TABLE {name} RENAME TO {old}")
        cursor.execute(f"CREATE TABLE {name} (LIKE {old})")
        cursor.execute(f"INSERT INTO {name} SELECT * FROM {old}")
        cursor.execute(f"DROP TABLE {old}")  # its partitions and its id sequence with it
        cursor.execute(f"ALTER TABLE {name} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), %s, %s)",
            [last_id or 1, last_id is not None],
        )
        for constraint, kind, definition in constraints:
            if kind == "p":
                definition = "PRIMARY KEY (id)"
            cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {constraint} {definition}")
        for definition in indexes:
            cursor.execute(definition)
    _known.pop(connection.settings_dict["NAME"], None)
