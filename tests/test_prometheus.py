"""Prometheus scrapes /metrics with a bearer token; people see it only with a staff session."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def scrape(client, **headers):
    return client.get("/metrics", **headers)


def samples(response) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.fixture
def token(settings) -> str:
    settings.WARDEN_METRICS_TOKEN = "scrape-token-for-tests-0123456789"
    return settings.WARDEN_METRICS_TOKEN


def test_a_scraper_with_the_token_reads_the_fleet_state(agent, client, token):
    # given one safe problem healing and one risky problem waiting for people
    agent.post_metrics(agent.sample("disk"))
    agent.post_metrics(agent.sample("firewall"))

    # when Prometheus scrapes
    response = scrape(client, HTTP_AUTHORIZATION=f"Bearer {token}")

    # then the gauges match what the database holds
    assert response.status_code == 200
    values = samples(response)
    assert values[("warden_approvals_pending", ())] == 1
    assert values[("warden_decisions", (("outcome", "AUTO_HEAL"),))] == 1
    assert values[("warden_decisions", (("outcome", "HITL_REQUIRED"),))] == 1
    assert values[("warden_executions", (("state", "dispatched"),))] == 1
    assert values[("warden_pauses_active", ())] == 0


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc"])
def test_without_the_token_it_asks_for_a_staff_login(db, client, token, header):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = scrape(client, **headers)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_staff_session_may_read_it(db, client, dave):
    client.force_login(dave)
    response = scrape(client)
    assert response.status_code == 200
    assert "warden_tickets" in response.content.decode()


def test_no_token_configured_means_no_anonymous_access(db, client, settings):
    settings.WARDEN_METRICS_TOKEN = ""
    assert scrape(client, HTTP_AUTHORIZATION="Bearer ").status_code == 302
