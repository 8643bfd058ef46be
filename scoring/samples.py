"""Storing a batch of classified samples: one INSERT, whatever the batch's size.

On PostgreSQL the rows go as one array per column through unnest(), ids returned:
Django's bulk_create spends ~90 microseconds of Python per row building the same
statement (bench/bench_serving.py), more than classifying the row. SQLite (the
embedded mode) uses bulk_create.
"""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from django.db import connection

from scoring.features import Reading
from scoring.inference import Classification
from scoring.models import MetricSample


class ClassifiedSample(Protocol):
    """What verification reads of a stored sample (a MetricSample, or the pipeline's
    StoredSample, which needs no model instance)."""

    @property
    def pk(self) -> int: ...
    @property
    def taken_at(self) -> datetime: ...
    @property
    def severity(self) -> int: ...
    @property
    def category(self) -> str: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def explanation(self) -> list[list]: ...


_UNNEST_INSERT = """
INSERT INTO scoring_metricsample (
    host_id, model_version_id, received_at, taken_at, disk_usage, memory_usage, cpu_usage,
    dns_latency_ms, firewall_change_requested, severity, confidence, category, categories,
    explanation, ticket_id
)
SELECT %s, %s, %s, r.* FROM unnest(
    %s::timestamptz[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::bool[],
    %s::int2[], %s::float8[], %s::varchar[], %s::jsonb[], %s::jsonb[], %s::int8[]
) AS r
RETURNING id, taken_at
"""


def insert_samples(
    host_id: int,
    readings: Sequence[Reading],
    verdicts: Sequence[Classification],
    model_version_id: int,
    received_at: datetime,
    ticket_ids: Sequence[int | None] | None = None,
) -> list[int]:
    """Store one host's readings with the model's verdicts (and the tickets they count on,
    when known); returns their ids, in order.

    Expects the caller's transaction, and readings not stored before (the unique
    host and instant would refuse them).
    """
    if not readings:
        return []
    ticket_ids = list(ticket_ids) if ticket_ids is not None else [None] * len(readings)
    if connection.vendor != "postgresql":
        rows = MetricSample.objects.bulk_create(
            MetricSample(
                host_id=host_id,
                model_version_id=model_version_id,
                received_at=received_at,
                taken_at=reading.taken_at,
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
            for reading, verdict, ticket_id in zip(readings, verdicts, ticket_ids, strict=True)
        )
        return [row.pk for row in rows]
    columns: tuple[list, ...] = tuple([] for _ in range(12))
    for reading, verdict, ticket_id in zip(readings, verdicts, ticket_ids, strict=True):
        for column, value in zip(
            columns,
            (
                reading.taken_at,
                reading.disk_usage,
                reading.memory_usage,
                reading.cpu_usage,
                reading.dns_latency_ms,
                bool(reading.firewall_change_requested),
                verdict.severity,
                verdict.confidence,
                verdict.category or "",
                json.dumps(list(verdict.categories)),
                json.dumps([[name, value] for name, value in verdict.explanation]),
                ticket_id,
            ),
            strict=True,
        ):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(_UNNEST_INSERT, [host_id, model_version_id, received_at, *columns])
        ids = {taken_at: pk for pk, taken_at in cursor.fetchall()}
    return [ids[reading.taken_at] for reading in readings]


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
