"""Bad input gets a clear 4xx naming the field, and nothing is stored, not even valid samples."""

import pytest

from governance.models import AuditEvent
from remediation.models import Ticket
from scoring.models import MetricSample

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def assert_nothing_stored():
    assert MetricSample.objects.count() == 0
    assert Ticket.objects.count() == 0
    assert not AuditEvent.objects.filter(action__startswith="ticket.").exists()


def drop(sample, field):
    return {k: v for k, v in sample.items() if k != field}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: drop(s, "disk_usage"), "disk_usage"),
        (lambda s: drop(s, "taken_at"), "taken_at"),
        (lambda s: {**s, "cpu_usage": "high"}, "cpu_usage"),
        (lambda s: {**s, "cpu_usage": "95"}, "cpu_usage"),
        (lambda s: {**s, "memory_usage": True}, "memory_usage"),
        (lambda s: {**s, "disk_usage": 100.5}, "disk_usage"),
        (lambda s: {**s, "memory_usage": -1}, "memory_usage"),
        (lambda s: {**s, "dns_latency_ms": -3}, "dns_latency_ms"),
        (lambda s: {**s, "firewall_change_requested": 2}, "firewall_change_requested"),
        (lambda s: {**s, "taken_at": "yesterday"}, "taken_at"),
        (lambda s: {**s, "taken_at": "2999-01-01T00:00:00Z"}, "taken_at"),
        (lambda s: {**s, "taken_at": "0001-01-01T00:00:00Z"}, "taken_at"),
        (lambda s: {**s, "firewall_change_requested": True}, "firewall_change_requested"),
        (lambda s: {**s, "host": "no-such-host"}, "host"),
    ],
)
def test_a_bad_sample_is_refused_naming_its_field(agent, mutate, field):
    # when
    response = agent.post_metrics(mutate(agent.sample("disk")))

    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert field in error["message"]
    assert_nothing_stored()


def test_one_bad_sample_rejects_the_whole_batch(agent):
    # given a batch whose third sample is out of range
    batch = [agent.sample("disk"), agent.sample(), {**agent.sample(), "cpu_usage": 140}]

    # when
    response = agent.post_metrics(batch)

    # then the field is named with its index and the two valid samples are not stored
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["[2].cpu_usage"]
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("body", "field"),
    [("[]", "samples"), ('"disk full"', "samples"), ("42", "samples")],
)
def test_empty_or_shapeless_batches_are_refused(agent, body, field):
    response = agent.post_metrics(body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert_nothing_stored()


def test_an_oversized_batch_is_refused(agent, settings):
    settings.WARDEN_MAX_BATCH = 5
    response = agent.post_metrics([agent.sample() for _ in range(6)])
    assert response.status_code == 400
    assert "At most 5 samples" in response.json()["error"]["fields"]["samples"][0]
    assert_nothing_stored()


def test_a_body_too_large_to_read_is_refused_naming_the_batch(agent, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    response = agent.post_metrics([agent.sample() for _ in range(20)])
    assert response.status_code == 400
    assert "send at most" in response.json()["error"]["fields"]["samples"][0]
    assert_nothing_stored()


def test_json_nested_too_deeply_is_a_clear_400(agent):
    response = agent.post_metrics("[" * 100_000)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]
    assert_nothing_stored()


def test_malformed_json_is_a_clear_400(agent):
    response = agent.post_metrics('{"host": "web-01", "disk_usage": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert_nothing_stored()


@pytest.mark.parametrize("key", [None, "", "wdn_not-a-real-key"])
def test_a_missing_or_wrong_key_gets_401(agent, client, key):
    headers = {} if key is None else {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    response = client.post(
        "/api/v1/metrics", data=agent.sample(), content_type="application/json", **headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")
    assert_nothing_stored()


def test_a_key_for_another_host_gets_403(agent, other_agent):
    # when web-02's key posts a sample for web-01
    response = agent.post_metrics(agent.sample("disk"), key=other_agent.key)

    # then
    assert response.status_code == 403
    assert "web-02" in response.json()["error"]["message"]
    assert_nothing_stored()


def test_a_disabled_host_is_refused(agent):
    agent.host.enabled = False
    agent.host.save()
    assert agent.post_metrics(agent.sample()).status_code == 401
    assert_nothing_stored()


def test_without_an_approved_model_metrics_are_refused_not_lost(agent):
    # given no model approved
    from scoring.models import ModelVersion

    ModelVersion.objects.update(status="retired")

    # when
    response = agent.post_metrics(agent.sample("disk"))

    # then the agent is told to retry later, and nothing half-done is stored
    assert response.status_code == 503
    assert "approve" in response.json()["error"]["message"]
    assert_nothing_stored()
