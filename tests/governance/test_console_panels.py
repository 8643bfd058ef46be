"""What the console shows, rendered on the server: fleet, sparklines, banner, panels."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from governance.approvals.actions import reject_request
from governance.console.panels import bucketed, fleet, fleet_state, sparkline_svg
from governance.models import ApprovalRequest, Pause
from governance.pauses.actions import pause_automation
from remediation.actions import add_host

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_buckets_keep_the_highest_reading_so_a_spike_shows():
    points = [(T0 + timedelta(seconds=s), v) for s, v in [(0, 10), (10, 90), (30, 20), (70, 5)]]
    assert bucketed(points, T0, T0 + timedelta(minutes=3), 3) == [90, 5, None]


def test_readings_outside_the_window_are_left_out():
    points = [(T0 - timedelta(seconds=1), 50), (T0 + timedelta(minutes=3), 60)]
    assert bucketed(points, T0, T0 + timedelta(minutes=3), 3) == [None, None, None]


def test_a_sparkline_is_inline_svg_scaled_to_percent_with_gaps_and_a_readable_title():
    svg = sparkline_svg(
        {"cpu_usage": [0, 100, None, 50, 50]}, labels={"cpu_usage": "CPU"}, width=40, height=12
    )
    assert svg.startswith("<svg") and "http" not in svg.replace("http://www.w3.org", "")
    # 0% at the bottom, 100% at the top, and the gap splits the line in two
    assert '<polyline class="spark-cpu_usage" points="0.0,11.0 10.0,1.0"/>' in svg
    assert '<polyline class="spark-cpu_usage" points="30.0,6.0 40.0,6.0"/>' in svg
    assert "<title>Last hour: CPU 0-100%</title>" in svg


def test_a_lone_reading_is_still_drawn_and_nothing_is_said_when_there_is_none():
    svg = sparkline_svg({"cpu_usage": [None, 70, None]}, labels={"cpu_usage": "CPU"})
    assert svg.count("<polyline") == 1
    assert "no readings" in sparkline_svg({"cpu_usage": [None]}, labels={"cpu_usage": "CPU"})


def test_a_reading_cannot_inject_markup_into_the_sparkline():
    svg = sparkline_svg({"cpu_usage": [1, 2]}, labels={"cpu_usage": "<script>"})
    assert "<script>" not in svg


@pytest.mark.django_db
def test_the_fleet_lists_hosts_that_need_people_first_then_silent_ones_then_healthy(
    agent, other_agent
):
    # given a healthy host and one asking for a firewall change
    other_agent.post_metrics(other_agent.sample())
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    add_host("db-01", now=timezone.now())  # and one that never reported

    rows, total = fleet(timezone.now())

    assert total == 3
    assert [row.host.name for row in rows] == ["web-01", "db-01", "web-02"]
    first, silent, second = rows
    assert (first.severity_label, first.severity_class) == ("Needs a person", "person")
    assert [ticket.ticket_id for ticket in first.open_tickets] == [result["ticket_id"]]
    assert first.readings.firewall_change_requested == 1
    assert "<svg" in first.sparkline
    assert (second.severity_label, second.open_tickets) == ("Healthy", [])
    assert (silent.severity_label, silent.readings, silent.sparkline) == (
        "No readings this hour",
        None,
        "",
    )


@pytest.mark.django_db
def test_the_fleet_is_three_queries_whatever_its_size(
    agent, other_agent, django_assert_num_queries
):
    agent.post_metrics(agent.sample("cpu"))
    other_agent.post_metrics(other_agent.sample())
    with django_assert_num_queries(3):
        fleet(timezone.now())


@pytest.mark.django_db
def test_the_banner_says_when_automation_is_stopped_and_who_waits(agent, alice):
    state = fleet_state(timezone.now())
    assert (state.level, state.waiting, state.serving_version) == ("running", 0, 1)
    assert (state.escalated, state.reviews_open, state.reviews_overdue) == (0, 0, 0)

    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    assert fleet_state(timezone.now()).level == "attention"
    assert fleet_state(timezone.now()).waiting == 1

    # a rejected change is no longer waiting, but its ticket is people's now: still counted
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    reject_request(request, actor=alice, reason="not in the freeze", now=timezone.now())
    state = fleet_state(timezone.now())
    assert (state.waiting, state.escalated, state.level) == (0, 1, "attention")
    assert [ticket.ticket_id for ticket in state.escalated_tickets] == [result["ticket_id"]]

    pause_automation(Pause(scope="all"), actor=alice, reason="change freeze", now=timezone.now())
    state = fleet_state(timezone.now())
    assert state.level == "stopped"
    assert "change freeze" in state.pauses[0].describe()


@pytest.mark.django_db
def test_a_model_out_of_its_depth_asks_for_attention(agent, monkeypatch):
    from governance.console import panels
    from scoring.monitoring import OK, OUT_OF_DEPTH, DriftReport

    def drift_at(level):
        return lambda now: (1, DriftReport(version=1, samples=5000, psi={}, level=level))

    monkeypatch.setattr(panels, "_drift", drift_at(OK))
    assert fleet_state(timezone.now()).level == "running"
    monkeypatch.setattr(panels, "_drift", drift_at(OUT_OF_DEPTH))
    assert fleet_state(timezone.now()).level == "attention"


@pytest.mark.django_db
def test_without_a_serving_model_the_banner_says_classification_is_stopped(client, alice):
    client.force_login(alice)
    response = client.get("/console/panels")
    assert response.status_code == 200
    assert b"No model serving" in response.content


@pytest.mark.django_db
def test_the_panels_show_people_what_waits_with_the_exact_commands(client, agent, alice, dave):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    client.force_login(alice)
    page = client.get("/console/panels").content.decode()
    assert result["ticket_id"] in page
    assert "0 of 2" in page
    assert (
        "warden-runbook nft-apply --file /etc/warden/requested-change.nft" in page
    )  # what will run
    assert 'data-verdict="approve"' in page

    # a compliance officer watches, but is offered no buttons
    client.force_login(dave)
    page = client.get("/console/panels").content.decode()
    assert result["ticket_id"] in page
    assert 'data-verdict="approve"' not in page


@pytest.mark.django_db
def test_the_panels_are_for_those_who_may_read_the_audit_trail(client, django_user_model):
    assert client.get("/console/panels").status_code == 302  # to the login page
    client.force_login(django_user_model.objects.create_user("eve", is_staff=True))
    assert client.get("/console/panels").status_code == 403
