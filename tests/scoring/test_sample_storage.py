"""A batch is stored in one statement (scoring.samples): every value as the agent sent it."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from scoring.models import MetricSample

pytestmark = pytest.mark.usefixtures("trusting_policies")


def test_stored_samples_keep_the_posted_values_exactly(agent):
    # given readings with awkward floats, microseconds and an offset other than UTC
    first = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=5)
    awkward = [
        {"disk_usage": 0.1 + 0.2, "cpu_usage": 1e-7, "dns_latency_ms": 599_999.999999},
        {"memory_usage": 99.99999999999999, "cpu_usage": 33.333333333333336},
        {"disk_usage": 97.0, "firewall_change_requested": 1},
    ]
    samples = []
    for i, metrics in enumerate(awkward):
        sample = agent.sample(**metrics)
        zone = timezone(timedelta(hours=-7, minutes=-30)) if i == 1 else UTC
        taken_at = (first + timedelta(seconds=i, microseconds=i)).astimezone(zone)
        sample["taken_at"] = taken_at.isoformat()
        samples.append(sample)

    # when
    response = agent.post_metrics(samples)

    # then every row holds what was posted, and what the model answered
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    rows = list(MetricSample.objects.order_by("taken_at"))
    assert len(rows) == 3
    for sample, result, row in zip(samples, results, rows, strict=True):
        assert row.taken_at == datetime.fromisoformat(sample["taken_at"])
        for name in ("disk_usage", "memory_usage", "cpu_usage", "dns_latency_ms"):
            assert getattr(row, name) == sample[name], name
        assert row.firewall_change_requested is bool(sample["firewall_change_requested"])
        assert round(row.confidence, 4) == result["confidence"]
        assert row.explanation == result["explanation"]
        assert (row.category or None) == result["category"]
    assert rows[2].categories and rows[2].ticket_id is not None
