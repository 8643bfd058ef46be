"""Drift monitoring: is the serving model out of its depth? Shown in the admin and at /metrics."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from remediation.actions import add_host
from scoring.drift import DRIFT_ALERT, DRIFT_WARNING
from scoring.features import FEATURE_NAMES, Reading, build_features
from scoring.inference import Classification
from scoring.models import MetricSample, ModelVersion, SampleMinute
from scoring.monitoring import (
    DRIFT_LOOKBACK,
    DRIFT_MIN_SAMPLES,
    LEVEL_RANK,
    drift_level,
    model_drift,
)
from scoring.samples import insert_samples
from scoring.synthetic import generate_dataset

# The demo's fleet size, drawn with another seed than the training data: what the
# serving model sees, not the data it was trained on.
FLEET = generate_dataset(20, 120, seed=3)


@pytest.fixture
def version(db, trained_model) -> ModelVersion:
    """A serving version with the default training distribution (all that matters here)."""
    return ModelVersion.objects.create(
        version=1,
        status="approved",
        algorithm="HistGradientBoostingClassifier",
        artifact="severity-v1.skops",
        sha256="0" * 64,
        feature_names=list(FEATURE_NAMES),
        feature_distribution=trained_model.feature_distribution,
    )


HEALTHY = Classification(0, 1.0, (1.0, 0.0, 0.0), (), None)


@pytest.fixture
def store(version):
    hosts = {
        name: add_host(name, now=timezone.now())[0]
        for name in sorted({r.host for r in FLEET.readings})
    }

    def store(readings: list[Reading], received_at=None) -> None:
        """Store `readings` as their agents would have posted them, the newest at
        `received_at` (now by default), with their minute summaries."""
        received_at = received_at or timezone.now()
        shift = received_at - max(r.taken_at for r in readings)
        for name in {r.host for r in readings}:
            own = sorted(
                (replace(r, taken_at=r.taken_at + shift) for r in readings if r.host == name),
                key=lambda r: r.taken_at,
            )
            insert_samples(
                hosts[name].pk,
                own,
                [HEALTHY] * len(own),
                version.pk,
                received_at,
                features=build_features(own),
            )

    return store


def forget() -> None:
    MetricSample.objects.all().delete()
    SampleMinute.objects.all().delete()


def fuller_disks(points: float) -> list[Reading]:
    """FLEET with every disk `points` fuller."""
    return [replace(r, disk_usage=min(r.disk_usage + points, 100.0)) for r in FLEET.readings]


def full_disks(per_host: int) -> list[Reading]:
    """`per_host` more readings from each host, every disk at 99%: far from the training data."""
    last = {r.host: r for r in FLEET.readings}
    return [
        replace(reading, taken_at=reading.taken_at + timedelta(seconds=10 * i), disk_usage=99.0)
        for reading in last.values()
        for i in range(1, per_host + 1)
    ]


@pytest.mark.parametrize(
    ("worst_psi", "level"),
    [
        (0.0, "ok"),
        (DRIFT_WARNING - 0.001, "ok"),
        (DRIFT_WARNING, "watch"),
        (DRIFT_ALERT - 0.001, "watch"),
        (DRIFT_ALERT, "out_of_depth"),
        (3.0, "out_of_depth"),
    ],
)
def test_the_worst_feature_sets_the_level(worst_psi, level):
    assert drift_level({"cpu_usage": 0.01, "disk_usage": worst_psi}) == level


def test_a_fresh_fleet_like_the_training_data_is_ok(store, version):
    store(list(FLEET.readings))

    report = model_drift(version, timezone.now())

    # raw PSI is noisy with 20 hosts; beyond their sampling noise, nothing moved
    assert (report.level, report.samples, report.hosts) == ("ok", 2400, 20)
    assert max(report.excess.values()) < DRIFT_WARNING


def test_the_further_disks_move_from_the_training_data_the_higher_the_level(store, version):
    levels = []
    for points in (0, 30):
        forget()
        store(fuller_disks(points))
        report = model_drift(version, timezone.now())
        levels.append(report.level)

    # the level climbs, and the disk is what moved
    assert levels == ["ok", "out_of_depth"]
    assert report.worst[0] == "disk_usage"
    assert report.excess["disk_usage"] >= DRIFT_ALERT
    assert report.excess["dns_latency_ms"] < DRIFT_WARNING
    assert report.label == "out of its depth"


def test_samples_older_than_the_lookback_do_not_count(store, version):
    # given plenty of samples, but older than a week, and a few recent ones
    store(list(FLEET.readings), received_at=timezone.now() - DRIFT_LOOKBACK - timedelta(hours=1))
    store(full_disks(5))

    report = model_drift(version, timezone.now())

    assert report.samples == 100 < DRIFT_MIN_SAMPLES
    assert (report.level, report.psi) == ("too_few_samples", {})


def test_a_quiet_day_is_judged_on_the_newest_samples_not_a_handful(store, version):
    # given a fleet that sent plenty two days ago and little since
    store(list(FLEET.readings), received_at=timezone.now() - timedelta(hours=48))
    store(full_disks(1))

    report = model_drift(version, timezone.now())

    # the newest minutes until they stand for enough readings (six a minute here), no more
    assert DRIFT_MIN_SAMPLES <= report.samples < DRIFT_MIN_SAMPLES + 6
    assert report.level == "ok"


def test_a_verdict_is_held_until_clearly_left(store, version):
    store(fuller_disks(30))
    assert model_drift(version, timezone.now()).level == "out_of_depth"
    forget()
    store(fuller_disks(12))  # a smaller shift: alone it would read as "watch" or less

    report = model_drift(version, timezone.now())

    alone = drift_level(report.excess)
    assert LEVEL_RANK[report.level] >= LEVEL_RANK[alone]


def test_the_admin_shows_a_version_out_of_its_depth(client, alice, store, version):
    store(fuller_disks(30))
    client.force_login(alice)

    change_page = client.get(f"/admin/scoring/modelversion/{version.pk}/change/")
    listing = client.get("/admin/scoring/modelversion/")

    page = change_page.content.decode()
    report = model_drift(version, timezone.now())
    assert "out of its depth (worst: disk_usage PSI" in page
    assert "; 2400 samples, 20 hosts)" in page
    for feature in ("disk_usage", "dns_latency_ms"):
        psi, noise = report.psi[feature], report.noise[feature]
        assert f"<tr><td>{feature}</td><td>{psi:.4f}</td><td>{noise:.4f}</td></tr>" in page
    assert "out of its depth" in listing.content.decode()


def test_the_admin_says_when_there_is_too_little_to_judge(client, alice, store, version):
    store(full_disks(5))
    client.force_login(alice)

    page = client.get(f"/admin/scoring/modelversion/{version.pk}/change/").content.decode()

    assert f"not enough samples yet (100 of {DRIFT_MIN_SAMPLES})" in page


def test_prometheus_reads_the_serving_models_drift(client, settings, store, version):
    # given a scraper with the metrics token, and a serving model out of its depth
    settings.WARDEN_METRICS_TOKEN = "scrape-me"
    store(fuller_disks(30))

    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").content.decode()

    report = model_drift(version, timezone.now())
    psi, excess = report.psi["disk_usage"], report.excess["disk_usage"]
    assert f'warden_model_drift_psi{{feature="disk_usage",version="1"}} {psi}' in body
    assert f'warden_model_drift_psi_excess{{feature="disk_usage",version="1"}} {excess}' in body
    assert 0 < excess < psi
    assert 'warden_model_drift_level{version="1"} 2.0' in body


def test_prometheus_gives_no_drift_level_on_too_few_samples(client, alice, store, version):
    store(full_disks(5))
    client.force_login(alice)

    body = client.get("/metrics").content.decode()

    assert "# TYPE warden_model_drift_level gauge" in body
    assert 'warden_model_drift_level{version="1"}' not in body
