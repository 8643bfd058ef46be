"""An agent that resends (its answer was lost) learns what was decided; nothing counts twice."""

import pytest

from governance.models import AuditEvent, Decision
from remediation.models import Execution, Ticket
from scoring.models import MetricSample

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def test_a_resent_healthy_batch_is_stored_once_and_answered_the_same(agent):
    batch = [agent.sample(), agent.sample(), agent.sample()]
    first = agent.post_metrics(batch)
    again = agent.post_metrics(batch)

    assert first.status_code == again.status_code == 201
    assert MetricSample.objects.count() == 3
    assert [r["duplicate"] for r in first.json()["results"]] == [False] * 3
    assert [r["duplicate"] for r in again.json()["results"]] == [True] * 3
    for original, resent in zip(first.json()["results"], again.json()["results"], strict=True):
        assert resent["taken_at"] == original["taken_at"]
        assert resent["severity"] == original["severity"]
        assert resent["ticket_id"] == original["ticket_id"]


def test_a_resent_problem_is_not_counted_or_decided_again(agent):
    batch = [agent.sample("disk"), agent.sample("disk")]
    first = agent.post_metrics(batch).json()["results"]
    audit_before = AuditEvent.objects.count()

    again = agent.post_metrics(batch).json()["results"]

    ticket = Ticket.objects.get()
    assert ticket.occurrence_count == 2
    assert Decision.objects.filter(ticket=ticket).count() == 1
    assert Execution.objects.filter(ticket=ticket).count() == 1
    assert {r["ticket_id"] for r in again} == {first[0]["ticket_id"]}
    assert all(r["duplicate"] for r in again)
    assert AuditEvent.objects.count() == audit_before, "a resend changes nothing on the record"


def test_a_batch_mixing_resent_and_new_readings_stores_only_the_new(agent):
    old = [agent.sample("disk"), agent.sample("disk")]
    agent.post_metrics(old)
    new = agent.sample("disk")

    results = agent.post_metrics([*old, new]).json()["results"]

    assert [r["duplicate"] for r in results] == [True, True, False]
    assert MetricSample.objects.count() == 3
    assert Ticket.objects.get().occurrence_count == 3


def test_two_copies_of_one_reading_in_a_batch_store_the_first(agent):
    reading = agent.sample(disk_usage=41.0)
    copy = {**reading, "disk_usage": 99.0}  # same instant: the agent's clock says a copy

    results = agent.post_metrics([reading, copy]).json()["results"]

    assert [r["duplicate"] for r in results] == [False, True]
    stored = MetricSample.objects.get()
    assert stored.disk_usage == 41.0
    assert results[1]["severity"] == results[0]["severity"] == "NO_ACTION"
    assert not Ticket.objects.exists()


def test_an_older_reading_sent_late_is_stored_without_moving_the_hosts_latest(agent):
    early = agent.sample()
    late = agent.sample(cpu_usage=12.0)
    agent.post_metrics([late])

    [result] = agent.post_metrics([early]).json()["results"]

    assert result["duplicate"] is False
    assert MetricSample.objects.count() == 2
    agent.host.refresh_from_db()
    assert agent.host.last_sample_at.isoformat() == late["taken_at"]


def test_a_busy_database_answers_503_in_the_api_shape_with_retry_after(agent, monkeypatch):
    from django.db import OperationalError

    from remediation.api import views

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(views, "ingest_samples", locked)
    response = agent.post_metrics([agent.sample()])

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert not MetricSample.objects.exists()
