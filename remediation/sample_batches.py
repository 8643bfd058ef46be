"""One agent batch's bookkeeping, around the pipeline (remediation.pipeline).

What a batch is made of and answered with (StoredSample, SampleVerdict), the host's row
lock that serialises a host's batches and finds the resent samples, and the grouping of
the new samples by the problems they show. No decisions here: the tickets and their
decisions are remediation.metric_tickets'.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from governance.rules.facts import NO_ACTION
from remediation.choices import ExecutionState
from remediation.models import Execution, Host
from scoring.choices import Severity
from scoring.features import Reading
from scoring.inference import Classification
from scoring.models import MetricSample


@dataclass(frozen=True)
class SampleVerdict:
    """What the API answers for one sample."""

    taken_at: datetime
    severity: str
    confidence: float
    category: str | None
    decision: str
    ticket_id: str | None
    explanation: tuple[tuple[str, float], ...]
    # Already stored (resent, or twice in one batch): acknowledged, not stored or counted.
    duplicate: bool = False
    # Every problem it showed: (category, decision, ticket id), the strongest first.
    problems: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StoredSample:
    """A sample this request stored: its id, what the agent read and what the model said.

    What verification, tickets and decisions read, without a model instance per row.
    """

    pk: int
    reading: Reading
    verdict: Classification
    # The server's clock: when the batch arrived, and when the reading was taken on it.
    received_at: datetime
    observed_at: datetime

    @property
    def taken_at(self) -> datetime:
        return self.reading.taken_at

    @property
    def severity(self) -> int:
        return self.verdict.severity

    @property
    def confidence(self) -> float:
        return self.verdict.confidence

    @property
    def category(self) -> str:
        return self.verdict.category or ""

    @property
    def categories(self) -> list[str]:
        return list(self.verdict.categories)

    @property
    def explanation(self) -> list[list]:
        return [[name, value] for name, value in self.verdict.explanation]


def first_of_each_instant(readings: Sequence[Reading]) -> dict[datetime, int]:
    """{taken_at: index of its first reading}: a later reading of the same instant is a copy."""
    first: dict[datetime, int] = {}
    for i, reading in enumerate(readings):
        first.setdefault(reading.taken_at, i)
    return first


@dataclass(frozen=True)
class LockedHost:
    """What the host's row lock found: the batch's instants already stored, and whether an
    execution on the host waits for fresh metrics to verify it."""

    stored: frozenset[datetime]
    verifying: bool


# The usual case in one statement: lock and mark the host if the batch is newer than
# anything stored for it, and say whether an execution there is verifying. Raw SQL
# because the ORM's update() cannot return a value, and this runs for every request.
_MARK_NEWER_BATCH = """
UPDATE {host} SET last_seen_at = %s, last_sample_at = %s, last_metrics = %s,
    clock_skew_seconds = %s, clock_checked_at = %s
WHERE id = %s AND (last_sample_at IS NULL OR last_sample_at < %s)
RETURNING EXISTS (SELECT 1 FROM {execution} WHERE host_id = %s AND state = %s)
"""


def lock_host(
    host: Host, readings: Sequence[Reading], now: datetime, skew_seconds: float
) -> LockedHost:
    """Lock the host's row and mark it seen (the caller's transaction holds the lock).

    A batch carrying the host's newest reading also records the clock skew it measured
    (`skew_seconds`, scoring.samples.measured_skew) on the row and on `host`; a resent
    one would measure only how long ago it was first sent.

    Usually one statement: a batch entirely newer than the host's newest stored sample
    cannot hold a resent one. Otherwise the stored instants are read under the lock.
    """
    instants = [reading.taken_at for reading in readings]
    newest = max(readings, key=lambda reading: reading.taken_at)
    metrics = list(newest.metrics())
    ops = connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            _MARK_NEWER_BATCH.format(host=Host._meta.db_table, execution=Execution._meta.db_table),
            [
                ops.adapt_datetimefield_value(now),
                ops.adapt_datetimefield_value(newest.taken_at),
                Host._meta.get_field("last_metrics").get_db_prep_save(metrics, connection),
                skew_seconds,
                ops.adapt_datetimefield_value(now),
                host.pk,
                ops.adapt_datetimefield_value(min(instants)),
                host.pk,
                ExecutionState.VERIFYING.value,
            ],
        )
        marked = cursor.fetchone()
    if marked is not None:
        host.clock_skew_seconds, host.clock_checked_at = skew_seconds, now
        return LockedHost(frozenset(), bool(marked[0]))
    locked = Host.objects.select_for_update().only("last_sample_at").get(pk=host.pk)
    stored = frozenset(
        MetricSample.objects.filter(host=host, taken_at__in=instants).values_list(
            "taken_at", flat=True
        )
    )
    newer = locked.last_sample_at is None or newest.taken_at > locked.last_sample_at
    newest_fields = {
        "last_sample_at": newest.taken_at,
        "last_metrics": metrics,
        "clock_skew_seconds": skew_seconds,
        "clock_checked_at": now,
    }
    Host.objects.filter(pk=host.pk).update(last_seen_at=now, **(newest_fields if newer else {}))
    if newer:
        host.clock_skew_seconds, host.clock_checked_at = skew_seconds, now
    verifying = Execution.objects.filter(host=host, state=ExecutionState.VERIFYING).exists()
    return LockedHost(stored, verifying)


def stored_verdicts(host: Host, instants: Sequence[datetime]) -> dict[datetime, SampleVerdict]:
    """The verdicts already given to the stored samples at `instants`, marked duplicate."""
    rows = MetricSample.objects.filter(host=host, taken_at__in=instants).select_related("ticket")
    return {
        row.taken_at: SampleVerdict(
            taken_at=row.taken_at,
            severity=Severity(row.severity).label,
            confidence=round(row.confidence, 4),
            category=row.category or None,
            decision=NO_ACTION,
            ticket_id=row.ticket.ticket_id if row.ticket else None,
            explanation=tuple((name, value) for name, value in row.explanation),
            duplicate=True,
        )
        for row in rows
    }


def problems_by_category(verdicts: Mapping[int, Classification]) -> dict[str, list[int]]:
    """Indexes of the non-healthy samples, grouped by each problem they show: a sample with
    disk and memory both full is in the disk group and in the memory group."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, verdict in verdicts.items():
        if verdict.severity == Severity.NO_ACTION:
            continue
        for category in verdict.categories or ((verdict.category,) if verdict.category else ()):
            groups[category].append(i)
    return dict(sorted(groups.items()))


def primary(verdict: Classification, category: str) -> bool:
    """Is `category` the sample's strongest problem (the ticket the sample row points at,
    and the decision its answer names)?"""
    return verdict.category == category
