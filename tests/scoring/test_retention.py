"""Months of samples: partitions made ahead and dropped whole, SQLite pruned in batches, each
removal audited; minute summaries kept exact and read by the console, drift and a host's page."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from governance.models import AuditEvent, Decision
from scoring import retention
from scoring.models import MetricSample, SampleMinute
from scoring.partitions import (
    MINUTES,
    SAMPLES,
    STATISTICS_TARGET,
    TABLES,
    attached,
    create_partitions,
    drop_partition,
)
from scoring.retention import apply_retention

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions are PostgreSQL's"
)
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite prunes rows")


def at(agent, when: datetime, problem: str | None = None, **metrics) -> dict:
    """A reading of `agent` stamped `when`. Posted in a batch with a reading of now, so the
    server measures the agent's clock right and keeps each reading at its stamp."""
    agent.clock = when - timedelta(seconds=1)
    sample = agent.sample(problem, **metrics)
    sample["taken_at"] = when.isoformat()
    return sample


def with_now(agent, *readings: dict) -> list[dict]:
    return [*readings, agent.sample()]


def days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


# --- partitions (PostgreSQL) ---------------------------------------------------------------


@postgres_only
def test_partitions_are_made_ahead_by_the_worker(db):
    later = timezone.now() + timedelta(days=20)

    run = apply_retention(later)

    # every day up to a week past the furthest an agent's clock may run ahead is there
    days = {p.start for p in attached(SAMPLES)}
    wanted = SAMPLES.partitions(later, later + timedelta(days=8))
    assert {p.start for p in wanted} <= days
    assert {p.name for p in wanted} & set(run.made)
    # and a second run finds nothing to make
    assert apply_retention(later).made == []


@postgres_only
def test_every_partition_is_analyzed_from_a_sample_of_3000_rows(db):
    # given the partitions the migrations made and those the worker makes ahead
    apply_retention(timezone.now() + timedelta(days=20))

    # then autovacuum's analyze reads 300 x 10 rows of each, not PostgreSQL's 30,000
    with connection.cursor() as cursor:
        for table in TABLES:
            partitions = attached(table)
            assert len(partitions) > 10
            for partition in partitions:
                cursor.execute(
                    "SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = "
                    "%s::regclass AND attnum > 0 AND NOT attisdropped",
                    [partition.name],
                )
                targets = dict(cursor.fetchall())
                assert set(targets.values()) == {STATISTICS_TARGET}, (partition.name, targets)


@contextmanager
def held_as_autovacuum_holds_it(table: str) -> Iterator[None]:
    """`table` locked by another backend as autovacuum locks what it works on, a little
    longer than deadlock_timeout: PostgreSQL makes autovacuum yield to a lock waiter only
    once the waiter has waited that long (1 s by default)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM current_setting('deadlock_timeout')::interval)")
        (deadlock_timeout,) = cursor.fetchone()
    seconds = float(deadlock_timeout) + 0.3
    locked, blocker = threading.Event(), psycopg.connect(**connection.get_connection_params())

    def hold() -> None:
        with blocker.transaction():
            blocker.execute(f'LOCK TABLE "{table}" IN SHARE UPDATE EXCLUSIVE MODE')
            locked.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        holder.join()
        blocker.close()


@postgres_only
def test_a_drop_outwaits_an_autovacuum_on_its_partition(db):
    partition = attached(SAMPLES)[0]
    with held_as_autovacuum_holds_it(partition.name):
        drop_partition(SAMPLES, partition)

    assert partition not in attached(SAMPLES)


@postgres_only
def test_making_a_partition_outwaits_an_autovacuum_on_the_hosts_it_refers_to(db):
    later = SAMPLES.partition(timezone.now() + timedelta(days=90))
    with held_as_autovacuum_holds_it("remediation_host"):
        assert create_partitions(SAMPLES, [later]) == [later]

    assert later in attached(SAMPLES)


@postgres_only
def test_a_reading_waits_for_no_worker_to_make_its_partition(agent):
    # given a worker stopped so long that today's partitions were never made
    now = timezone.now()
    for table in TABLES:
        for partition in attached(table):
            if partition.end > now - timedelta(days=1):
                drop_partition(table, partition)

    # readings of now, and of a clock a little ahead, are stored all the same
    response = agent.post_metrics(with_now(agent, at(agent, now + timedelta(minutes=2))))

    assert response.status_code == 201, response.content
    assert MetricSample.objects.count() == 2
    assert SampleMinute.objects.count() >= 1
    assert SAMPLES.partition(now) in attached(SAMPLES)
    assert MINUTES.partition(now) in attached(MINUTES)


@postgres_only
def test_a_partition_made_by_a_request_that_failed_is_made_again(agent):
    from django.db import transaction

    from scoring.partitions import ensure_partitions

    later = timezone.now() + timedelta(days=60)  # past any the worker made
    with pytest.raises(RuntimeError), transaction.atomic():
        assert ensure_partitions(SAMPLES, [later]) == [SAMPLES.partition(later)]
        raise RuntimeError("the request fails after making it")
    assert SAMPLES.partition(later) not in attached(SAMPLES)

    # the next request needing it makes it again, rather than trust what rolled back
    with transaction.atomic():
        assert ensure_partitions(SAMPLES, [later]) == [SAMPLES.partition(later)]
    assert ensure_partitions(SAMPLES, [later]) == []


@postgres_only
def test_a_partition_past_its_keeping_period_is_dropped_whole_and_audited(agent, settings):
    settings.WARDEN_SAMPLE_RETENTION_DAYS = 3
    old = days_ago(2.5)
    agent.post_metrics(with_now(agent, at(agent, old), at(agent, old + timedelta(seconds=10))))
    gone = SAMPLES.partition(old)

    # when the worker runs two days later, the old day is wholly past three days
    run = apply_retention(timezone.now() + timedelta(days=2))

    assert run.removed[gone.name] == 2
    assert gone not in attached(SAMPLES)
    assert MetricSample.objects.count() == 1  # today's
    event = AuditEvent.objects.get(action="retention.dropped", object_id=gone.name)
    assert (event.actor, event.object_type) == ("system:retention", "MetricSample")
    assert event.data["rows"] == 2
    assert event.data["kept_days"] == 3
    assert event.data["period"] == {
        "from": gone.start.isoformat(),
        "to": (gone.start + timedelta(days=1)).isoformat(),
    }
    assert f"2 samples of {gone.start:%Y-%m-%d} to {gone.start:%Y-%m-%d} dropped" in event.summary


@postgres_only
def test_minute_summaries_are_kept_longer_than_samples(agent, settings):
    settings.WARDEN_SAMPLE_RETENTION_DAYS = 3
    agent.post_metrics(with_now(agent, at(agent, days_ago(2.5))))

    apply_retention(timezone.now() + timedelta(days=2))

    assert MetricSample.objects.count() == 1  # today's
    assert SampleMinute.objects.count() == 2
    # only the summaries' weeks past their own, longer period went (empty here)
    assert {e.data["rows"] for e in AuditEvent.objects.filter(object_type="SampleMinute")} <= {0}


@postgres_only
def test_the_day_being_written_is_never_dropped(agent):
    agent.post_metrics(agent.sample())

    run = apply_retention(timezone.now())

    assert run.removed == {}
    assert MetricSample.objects.count() == 1


# --- pruning (SQLite) ----------------------------------------------------------------------


@sqlite_only
def test_sqlite_prunes_old_samples_in_batches_with_one_audit_event(agent, settings, monkeypatch):
    settings.WARDEN_SAMPLE_RETENTION_DAYS = 3
    monkeypatch.setattr(retention, "PRUNE_BATCH", 2)
    old = days_ago(2.5)
    agent.post_metrics(with_now(agent, *(at(agent, old + timedelta(seconds=i)) for i in range(5))))
    later = timezone.now() + timedelta(days=1)

    run = apply_retention(later)

    assert run.removed == {"scoring_metricsample": 5}
    assert MetricSample.objects.count() == 1
    [event] = AuditEvent.objects.filter(action="retention.pruned")
    assert event.data["rows"] == 5
    assert event.data["period"] == {"to": (later - timedelta(days=3)).isoformat()}
    assert "5 samples taken before" in event.summary
    # nothing left to prune: nothing more on the record
    apply_retention(later)
    assert AuditEvent.objects.filter(action="retention.pruned").count() == 1


@sqlite_only
def test_sqlite_prunes_minute_summaries_after_their_own_period(agent, settings):
    settings.WARDEN_SAMPLE_RETENTION_DAYS = 3
    settings.WARDEN_MINUTE_RETENTION_DAYS = 10
    agent.post_metrics(with_now(agent, at(agent, days_ago(2.5))))

    apply_retention(timezone.now() + timedelta(days=2))
    assert (MetricSample.objects.count(), SampleMinute.objects.count()) == (1, 2)
    apply_retention(timezone.now() + timedelta(days=9))

    assert SampleMinute.objects.count() == 1  # today's
    event = AuditEvent.objects.get(action="retention.pruned", object_type="SampleMinute")
    assert event.data["rows"] == 1


# --- both databases ------------------------------------------------------------------------


@pytest.mark.usefixtures("trusting_policies")
def test_a_decision_loses_its_sample_when_the_sample_goes(agent, settings):
    settings.WARDEN_SAMPLE_RETENTION_DAYS = 3
    agent.post_metrics(with_now(agent, at(agent, days_ago(2.5), "disk")))
    decision = Decision.objects.get()
    assert decision.sample is not None

    apply_retention(timezone.now() + timedelta(days=2))

    decision.refresh_from_db()
    assert decision.sample is None
    assert decision.explanation, "the decision keeps its own record of what it read"


def test_a_reading_older_than_samples_are_kept_is_refused(agent, settings):
    settings.WARDEN_SAMPLE_RETENTION_DAYS = 3

    response = agent.post_metrics([agent.sample(), at(agent, days_ago(3.1))])

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "[1].taken_at": ["taken_at is more than 3 days in the past."]
    }
    assert MetricSample.objects.count() == 0


def test_a_resent_sample_from_an_older_day_is_stored_once(agent):
    # given a reading of two days ago (its own partition on PostgreSQL) and one of today
    batch = with_now(agent, at(agent, days_ago(2)))
    first = agent.post_metrics(batch)

    again = agent.post_metrics(batch)

    assert first.status_code == again.status_code == 201
    assert [r["duplicate"] for r in again.json()["results"]] == [True, True]
    assert MetricSample.objects.count() == 2
    assert sum(SampleMinute.objects.values_list("samples", flat=True)) == 2


def test_a_minute_summary_holds_its_samples_lowest_highest_and_mean(agent):
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    cpu = [10.0, 70.0, 40.0, 20.0]
    # two batches, the second holding the minute's earliest reading (an agent's late send)
    first = [(10, cpu[0]), (40, cpu[1]), (50, cpu[2])]
    agent.post_metrics(
        with_now(agent, *(at(agent, minute + timedelta(seconds=s), cpu_usage=c) for s, c in first))
    )
    agent.post_metrics(
        with_now(agent, at(agent, minute + timedelta(seconds=1), cpu_usage=cpu[3], disk_usage=95.0))
    )

    summary = SampleMinute.objects.get(minute=minute)
    samples = MetricSample.objects.filter(taken_at__lt=minute + timedelta(minutes=1)).order_by(
        "taken_at"
    )
    assert summary.minute == minute.astimezone(UTC)
    assert summary.samples == 4
    assert (summary.cpu_min, summary.cpu_max) == (10.0, 70.0)
    assert summary.mean("cpu") == pytest.approx(sum(cpu) / 4)
    assert summary.disk_max == 95.0
    assert summary.mean("memory") == pytest.approx(sum(s.memory_usage for s in samples) / 4)
    assert summary.worst_severity == max(s.severity for s in samples)
    # the minute's newest reading stands for it, whichever batch came last
    newest = samples.last()
    assert summary.last_at == newest.observed_at
    assert summary.last_severity == newest.severity
    assert summary.last_features[2] == newest.cpu_usage == 40.0


def test_the_console_draws_from_minute_summaries_not_samples(agent, other_agent):
    from governance.console.panels import fleet

    agent.post_metrics(agent.sample("firewall"))
    other_agent.post_metrics(other_agent.sample())
    MetricSample.objects.all().delete()  # the raw samples gone: the summaries still draw

    first, second = fleet(timezone.now())[0]

    assert (first.host.name, first.severity_label) == ("web-01", "Needs a person")
    assert (second.host.name, second.severity_label) == ("web-02", "Healthy")
    assert "<svg" in first.sparkline and "<svg" in second.sparkline


def test_drift_reads_minute_summaries_not_samples(agent, approved_model):
    from scoring.monitoring import model_drift

    agent.post_metrics([agent.sample() for _ in range(3)])
    MetricSample.objects.all().delete()

    report = model_drift(approved_model, timezone.now())

    assert (report.samples, report.hosts) == (3, 1)


def test_a_hosts_page_draws_its_last_day_from_minute_summaries(client, agent, alice):
    agent.post_metrics(agent.sample())
    MetricSample.objects.all().delete()
    client.force_login(alice)

    page = client.get(f"/admin/remediation/host/{agent.host.pk}/change/").content.decode()

    assert '<svg class="spark"' in page
    assert "Last day: CPU" in page
    assert f"/admin/scoring/metricsample/?host={agent.host.pk}" in page


def test_the_sample_list_filters_by_host_without_listing_every_host(
    client, agent, other_agent, alice
):
    agent.post_metrics(agent.sample())
    other_agent.post_metrics(other_agent.sample())
    client.force_login(alice)

    page = client.get(f"/admin/scoring/metricsample/?host={agent.host.pk}").content.decode()
    everything = client.get("/admin/scoring/metricsample/").content.decode()

    assert "1 metric sample" in page
    assert "2 metric samples" in everything
    assert other_agent.host.name not in page


@postgres_only
def test_migrating_a_plain_table_into_partitions_keeps_every_row_id_and_rule(db):
    from django.db import IntegrityError, transaction

    from scoring.partitions import PartitionedTable, partition_table

    table = PartitionedTable("scratch_readings", "taken_at", 1)
    old, new = days_ago(40), days_ago(0.5)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE scratch_readings (id bigint GENERATED BY DEFAULT AS IDENTITY "
            "PRIMARY KEY, host_id int NOT NULL, taken_at timestamptz NOT NULL, "
            "value float CHECK (value >= 0), CONSTRAINT scratch_once UNIQUE (host_id, taken_at))"
        )
        cursor.execute("CREATE INDEX scratch_taken ON scratch_readings (taken_at)")
        cursor.execute(
            "INSERT INTO scratch_readings (host_id, taken_at, value) VALUES "
            "(1, %s, 1), (1, %s, 2), (2, %s, 3)",
            [old, new, new],
        )

        partition_table(table, days_ago(3), timezone.now() + timedelta(days=1))

        cursor.execute("SELECT id, host_id FROM scratch_readings ORDER BY id")
        assert cursor.fetchall() == [(1, 1), (2, 1), (3, 2)]
        # the 40-day-old row got its own partition, kept for retention to drop (audited)
        assert table.partition(old) in attached(table)
        cursor.execute(
            "INSERT INTO scratch_readings (host_id, taken_at, value) VALUES (3, %s, 4) "
            "RETURNING id",
            [new],
        )
        assert cursor.fetchone() == (4,)
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'scratch_readings'")
        assert {"scratch_taken", "scratch_once", "scratch_readings_pkey"} <= {
            name for (name,) in cursor.fetchall()
        }
        for values in ([1, new, 5], [4, new, -1]):  # resent; out of bounds
            with pytest.raises(IntegrityError), transaction.atomic():
                cursor.execute(
                    "INSERT INTO scratch_readings (host_id, taken_at, value) VALUES (%s, %s, %s)",
                    values,
                )

        # and a step back makes it one plain table again, every row, id and rule kept
        from scoring.partitions import unpartition_table

        unpartition_table(table)

        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'scratch_readings'")
        assert cursor.fetchone() == ("r",)
        assert attached(table) == []
        cursor.execute("SELECT id, host_id FROM scratch_readings ORDER BY id")
        assert cursor.fetchall() == [(1, 1), (2, 1), (3, 2), (4, 3)]
        cursor.execute(
            "INSERT INTO scratch_readings (host_id, taken_at, value) VALUES (5, %s, 1) "
            "RETURNING id",
            [old],
        )
        assert cursor.fetchone() == (5,)
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'scratch_readings'")
        assert {"scratch_taken", "scratch_once", "scratch_readings_pkey"} <= {
            name for (name,) in cursor.fetchall()
        }
        for values in ([1, new, 5], [4, new, -1]):
            with pytest.raises(IntegrityError), transaction.atomic():
                cursor.execute(
                    "INSERT INTO scratch_readings (host_id, taken_at, value) VALUES (%s, %s, %s)",
                    values,
                )
