"""Storing a batch of classified samples: one INSERT, whatever the batch's size, with the
host's minute summaries merged in the same statement (scoring.minutes).

On PostgreSQL the rows go as one JSON document through json_to_recordset(), ids
returned: Django's bulk_create spends ~90 microseconds of Python per row building the
same statement, and psycopg adapts a Python list per column at ~30 microseconds each
(13 columns: the whole cost of a one-sample insert), where json.dumps writes every
row in one C call (bench/bench_serving.py). SQLite (the embedded mode) uses bulk_create.
"""

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from django.conf import settings
from django.db import connection

from scoring.features import Reading, build_features
from scoring.inference import Classification
from scoring.minutes import SUMMARISED, MinuteSummary, summarise
from scoring.models import MetricSample, SampleMinute
from scoring.partitions import MINUTES, SAMPLES, ensure_partitions


class ClassifiedSample(Protocol):
    """What verification reads of a stored sample (a MetricSample, or the pipeline's
    StoredSample, which needs no model instance)."""

    @property
    def pk(self) -> int: ...
    @property
    def taken_at(self) -> datetime: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def observed_at(self) -> datetime | None: ...
    @property
    def severity(self) -> int: ...
    @property
    def category(self) -> str: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def explanation(self) -> list[list]: ...


_INSERT_FROM_JSON = """
INSERT INTO scoring_metricsample (
    host_id, model_version_id, received_at, taken_at, observed_at, disk_usage, memory_usage,
    cpu_usage, dns_latency_ms, firewall_change_requested, severity, confidence, category,
    categories, explanation, ticket_id
)
SELECT %s, %s, %s, r.* FROM json_to_recordset(%s::json) AS r(
    taken_at timestamptz, observed_at timestamptz, disk_usage float8, memory_usage float8,
    cpu_usage float8, dns_latency_ms float8, firewall_change_requested bool, severity int2,
    confidence float8, category varchar, categories jsonb, explanation jsonb, ticket_id int8
)
RETURNING id, taken_at
"""
# The record's fields, in the order of json_to_recordset's column list above.
_JSON_FIELDS = (
    "taken_at",
    "observed_at",
    "disk_usage",
    "memory_usage",
    "cpu_usage",
    "dns_latency_ms",
    "firewall_change_requested",
    "severity",
    "confidence",
    "category",
    "categories",
    "explanation",
    "ticket_id",
)

# A minute row per host and minute (scoring.minutes), merged into by every batch.
_MINUTE_COLUMNS = (
    "minute",
    "samples",
    *(f"{name}_{kind}" for name, _ in SUMMARISED for kind in ("min", "max", "sum")),
    "worst_severity",
    "last_at",
    "last_severity",
    "last_features",
)
_MINUTE_TYPES = (
    "timestamptz",
    "int4",
    *("float8" for _ in SUMMARISED for _kind in range(3)),
    "int2",
    "timestamptz",
    "int2",
    "jsonb",
)


def _minute_merge(least: str, greatest: str) -> str:
    """ON CONFLICT's merge of a minute's new summary into its stored row: lowest of lows,
    highest of highs, sums added, and the newest reading's fields from whichever is newer
    (a tie: the one written now)."""
    table = SampleMinute._meta.db_table
    merges = [f"samples = {table}.samples + excluded.samples"]
    for name, _ in SUMMARISED:
        merges += [
            f"{name}_min = {least}({table}.{name}_min, excluded.{name}_min)",
            f"{name}_max = {greatest}({table}.{name}_max, excluded.{name}_max)",
            f"{name}_sum = {table}.{name}_sum + excluded.{name}_sum",
        ]
    merges.append(f"worst_severity = {greatest}({table}.worst_severity, excluded.worst_severity)")
    newer = f"excluded.last_at >= {table}.last_at"
    for name in ("last_severity", "last_features", "last_at"):
        merges.append(f"{name} = CASE WHEN {newer} THEN excluded.{name} ELSE {table}.{name} END")
    return f"ON CONFLICT (host_id, minute) DO UPDATE SET {', '.join(merges)}"


_UPSERT_MINUTES = f"""
INSERT INTO {SampleMinute._meta.db_table} (host_id, {", ".join(_MINUTE_COLUMNS)})
SELECT %s, m.* FROM unnest({", ".join(f"%s::{kind}[]" for kind in _MINUTE_TYPES)}) AS m
{_minute_merge("LEAST", "GREATEST")}
"""
# PostgreSQL: the samples and their minutes in one statement, one round trip.
_INSERT_WITH_MINUTES = f"""
WITH inserted AS ({_INSERT_FROM_JSON}), summarised AS ({_UPSERT_MINUTES})
SELECT id, taken_at FROM inserted
"""
# SQLite: a row of values a minute; its MIN and MAX of two values are LEAST and GREATEST.
_UPSERT_MINUTES_SQLITE = f"""
INSERT INTO {SampleMinute._meta.db_table} (host_id, {", ".join(_MINUTE_COLUMNS)})
VALUES (%s, {", ".join("%s" for _ in _MINUTE_COLUMNS)})
{_minute_merge("MIN", "MAX")}
"""


def insert_samples(
    host_id: int,
    readings: Sequence[Reading],
    verdicts: Sequence[Classification],
    model_version_id: int,
    received_at: datetime,
    ticket_ids: Sequence[int | None] | None = None,
    observed: Sequence[datetime] | None = None,
    features: np.ndarray | None = None,
) -> list[int]:
    """Store one host's readings with the model's verdicts (and the tickets they count on,
    when known, and when each was taken on the server's clock: observed_times), and merge
    them into the host's minute summaries (scoring.minutes); returns their ids, in order.

    `features` are the rows the model classified (scoring.features; by default built from
    `readings` alone, deltas from zero). Expects the caller's transaction, and readings not
    stored before (the unique host and instant would refuse them).
    """
    if not readings:
        return []
    ticket_ids = list(ticket_ids) if ticket_ids is not None else [None] * len(readings)
    if observed is None:
        observed = [min(reading.taken_at, received_at) for reading in readings]
    if features is None:
        features = build_features(readings)
    minutes = summarise(observed, features, [verdict.severity for verdict in verdicts])
    if connection.vendor != "postgresql":
        rows = MetricSample.objects.bulk_create(
            MetricSample(
                host_id=host_id,
                model_version_id=model_version_id,
                received_at=received_at,
                taken_at=reading.taken_at,
                observed_at=observed_at,
                disk_usage=reading.disk_usage,
                memory_usage=reading.memory_usage,
                cpu_usage=reading.cpu_usage,
                dns_latency_ms=reading.dns_latency_ms,
                firewall_change_requested=bool(reading.firewall_change_requested),
                severity=verdict.severity,
                confidence=verdict.confidence,
                category=verdict.category or "",
                categories=list(verdict.categories),
                explanation=[[name, value] for name, value in verdict.explanation],
                ticket_id=ticket_id,
            )
            for reading, verdict, ticket_id, observed_at in zip(
                readings, verdicts, ticket_ids, observed, strict=True
            )
        )
        ops = connection.ops
        with connection.cursor() as cursor:
            cursor.executemany(
                _UPSERT_MINUTES_SQLITE,
                [
                    [host_id, *values]
                    for values in _minute_columns(
                        minutes, ops.adapt_datetimefield_value, json.dumps
                    )
                ],
            )
        return [row.pk for row in rows]
    # Times as ISO 8601 with their offset and floats as repr: PostgreSQL reads back exactly
    # the values given. Readings are finite numbers (JSON has no NaN; the API refuses it).
    rows = [
        dict(
            zip(
                _JSON_FIELDS,
                (
                    reading.taken_at.isoformat(),
                    observed_at.isoformat(),
                    reading.disk_usage,
                    reading.memory_usage,
                    reading.cpu_usage,
                    reading.dns_latency_ms,
                    bool(reading.firewall_change_requested),
                    verdict.severity,
                    verdict.confidence,
                    verdict.category or "",
                    list(verdict.categories),
                    [[name, value] for name, value in verdict.explanation],
                    ticket_id,
                ),
                strict=True,
            )
        )
        for reading, verdict, ticket_id, observed_at in zip(
            readings, verdicts, ticket_ids, observed, strict=True
        )
    ]
    document = json.dumps(rows, allow_nan=False)
    ensure_partitions(SAMPLES, [reading.taken_at for reading in readings])
    ensure_partitions(MINUTES, [m.minute for m in minutes])
    by_column = list(zip(*_minute_columns(minutes, lambda v: v, json.dumps), strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_WITH_MINUTES,
            [host_id, model_version_id, received_at, document, host_id, *map(list, by_column)],
        )
        ids = {taken_at: pk for pk, taken_at in cursor.fetchall()}
    return [ids[reading.taken_at] for reading in readings]


def _minute_columns(
    minutes: Sequence[MinuteSummary], when: Callable[[datetime], Any], as_json: Callable
) -> list[list]:
    """Each summary's values in _MINUTE_COLUMNS order."""
    return [
        [
            when(m.minute),
            m.samples,
            *(v for trio in zip(m.lowest, m.highest, m.sums, strict=True) for v in trio),
            m.worst_severity,
            when(m.last_at),
            m.last_severity,
            as_json(list(m.last_features)),
        ]
        for m in minutes
    ]


# --- Time is the server's ----------------------------------------------------------------
# An agent stamps its readings by its host's clock, which may be minutes off. The server
# measures each batch's skew (its newest stamp minus when the server received it) and keeps
# it on the host; a reading's time on the server's clock ("observed") is its stamp corrected
# by that skew, and never later than its receipt. Verification, freshness and the console
# read the observed time; the stamp stays the agent's key for resent samples.


def measured_skew(newest_taken_at: datetime, received_at: datetime) -> float:
    """Seconds the agent's clock is ahead of the server's (negative: behind), as one batch
    shows it: its newest stamp against its receipt. A batch the agent held back measures
    behind by the time it was held."""
    return (newest_taken_at - received_at).total_seconds()


# Below this a measured skew is the network's latency and the agent's stamping, not its
# clock: the stamps are taken as they are.
CLOCK_NOISE_SECONDS = 2.0
# A batch measuring the clock further behind than the host's known skew by more than this
# was held back by its agent (buffered while it could not reach the server), not set back.
HELD_BACK_SECONDS = 5.0


def assumed_skew(known: float | None, measured: float) -> float:
    """The skew a batch's stamps are corrected by: this batch's own measurement, unless it
    says the clock fell back by more than HELD_BACK_SECONDS since the host's known skew:
    then the batch was buffered, and the known skew stands, so its readings look as old
    as they are, never fresher."""
    skew = measured if known is None or measured >= known - HELD_BACK_SECONDS else known
    return 0.0 if abs(skew) < CLOCK_NOISE_SECONDS else skew


def observed_times(
    stamps: Sequence[datetime], skew_seconds: float, received_at: datetime
) -> list[datetime]:
    """When each reading was taken on the server's clock: its stamp less the skew, and never
    after the server received it."""
    skew = timedelta(seconds=skew_seconds)
    return [min(stamp - skew, received_at) for stamp in stamps]


def observed_at(sample: ClassifiedSample) -> datetime:
    """When a stored sample was taken, on the server's clock (a row stored before the skew
    was measured: the earlier of its stamp and its receipt)."""
    return sample.observed_at or min(sample.taken_at, sample.received_at)


def reading_max_age() -> timedelta:
    return timedelta(seconds=settings.WARDEN_READING_MAX_AGE_SECONDS)


def reading_is_fresh(sample: ClassifiedSample, now: datetime) -> bool:
    """May this reading confirm anything at `now` (a fix verified, an alert's problem still
    there)? Only if it was taken, on the server's clock, within WARDEN_READING_MAX_AGE_SECONDS
    before `now`: a reading from a silent agent, or one it buffered for long, says nothing
    about the host now."""
    taken = observed_at(sample)
    return taken <= now and now - taken <= reading_max_age()


def clock_is_off(skew_seconds: float | None) -> bool:
    """Is a host's clock off by more than WARDEN_CLOCK_SKEW_FLAG_SECONDS (flagged)?"""
    return skew_seconds is not None and abs(skew_seconds) > settings.WARDEN_CLOCK_SKEW_FLAG_SECONDS


def describe_skew(skew_seconds: float) -> str:
    """ "10 min behind", "45 s ahead": how far a host's clock is from the server's."""
    seconds = round(abs(skew_seconds))
    amount = f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"
    return f"{amount} {'behind' if skew_seconds < 0 else 'ahead'}"


# A sample still shows the problem when the category's metric pushed it to its
# class by at least this much (the explanation's probability drop).
PROBLEM_CONTRIBUTION = 0.05
CATEGORY_METRIC = {
    "disk": "disk_usage",
    "memory": "memory_usage",
    "cpu": "cpu_usage",
    "dns": "dns_latency_ms",
    "firewall": "firewall_change_requested",
}


def sample_shows_problem(sample: ClassifiedSample, category: str) -> bool:
    """Does this sample still show the problem of `category`?"""
    if sample.severity == 0:
        return False
    metric = CATEGORY_METRIC.get(category)
    contributions = {name: value for name, value in sample.explanation}
    if sample.category == category or category in (sample.categories or ()):
        return True
    if metric is None:
        return False
    return contributions.get(metric, 0.0) >= PROBLEM_CONTRIBUTION
