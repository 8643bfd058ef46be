"""Alerts in: Alertmanager's webhook and a generic JSON webhook open, count and resolve
tickets through the same engine, deduplicated by fingerprint, with their own token."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone

from governance.models import ApprovalRequest, AuditEvent, Decision
from remediation.actions import add_host, close_ticket
from remediation.models import Alert, Execution, Ticket
from tests.conftest import Api

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

# Alerts from a few days back, not a fixed date: intake refuses alerts older than a year.
DAY = (datetime.now(UTC) - timedelta(days=4)).date().isoformat()
STARTED = f"{DAY}T01:00:00Z"
ENDED = f"{DAY}T02:00:00Z"


AM = "/api/v1/alerts/alertmanager"
WEBHOOK = "/api/v1/alerts/webhook"


def am_alert(
    fingerprint: str = "a1b2c3d4e5f60718",
    status: str = "firing",
    instance: str = "web-01:9100",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "HostOutOfDiskSpace",
            "instance": instance,
            "severity": "critical",
            **labels,
        },
        "annotations": {
            "summary": "Host out of disk space",
            "description": "Disk is almost full (< 10% left) on /var",
        },
        "startsAt": STARTED,
        "endsAt": ENDED if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes",
        "fingerprint": fingerprint,
    }


def am_body(*alerts: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook body, version 4."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HostOutOfDiskSpace"}',
        "truncatedAlerts": 0,
        "status": alerts[0]["status"],
        "receiver": "warden",
        "groupLabels": {"alertname": "HostOutOfDiskSpace"},
        "commonLabels": {"alertname": "HostOutOfDiskSpace"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


@pytest.fixture
def web(db):
    host, _ = add_host("web-01", now=timezone.now())
    return host


@pytest.fixture
def disk_still_full(agent, alice):
    """web-01's newest reading shows a full disk, and its agent's ticket was closed by hand."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    close_ticket(ticket, actor=alice, resolved=True, reason="cleaned by hand", now=timezone.now())
    return agent


def test_a_firing_alert_opens_a_ticket_that_waits_for_a_person(sender, web):
    response = sender.post(AM, am_body(am_alert()))

    assert response.status_code == 200, response.content
    [result] = response.json()["alerts"]
    assert result["outcome"] == "opened" and result["ticket_id"] == "AM-a1b2c3d4e5f60718-1"
    ticket = Ticket.objects.get(ticket_id="AM-a1b2c3d4e5f60718-1")
    assert (ticket.host, ticket.category, ticket.source) == (web, "disk", "alert")
    assert ticket.title == "Host out of disk space" and ticket.priority == "critical"
    # the seed's rule: off unless asked for; no reading stands behind it, so a person decides
    assert ticket.enable_auto_remediation is False
    assert Decision.objects.get(ticket=ticket).outcome == "HITL_REQUIRED"
    opened = AuditEvent.objects.get(action="ticket.opened", ticket_id=ticket.ticket_id)
    assert opened.actor == "user:alertmanager"
    assert opened.data["details"]["fingerprint"] == "a1b2c3d4e5f60718"


def test_a_tickets_evidence_shows_the_alerts_behind_it(sender, web, dave, client):
    sender.post(AM, am_body(am_alert()))
    sender.post(AM, am_body(am_alert()))
    client.force_login(dave)  # compliance

    page = client.get("/tickets/AM-a1b2c3d4e5f60718-1/evidence")

    assert page.status_code == 200
    [alert] = page.context["evidence"]["alerts"]
    assert (alert["name"], alert["received"], alert["status"]) == (
        "HostOutOfDiskSpace",
        2,
        "firing",
    )
    assert page.context["evidence"]["ticket"]["source"] == "Alert"
    assert b"HostOutOfDiskSpace" in page.content and b"2\xc3\x97" in page.content


def test_a_resent_alert_is_counted_once(sender, web):
    sender.post(AM, am_body(am_alert()))
    events = AuditEvent.objects.count()

    response = sender.post(AM, am_body(am_alert()))

    assert response.json()["alerts"][0]["outcome"] == "repeated"
    ticket = Ticket.objects.get()
    assert ticket.occurrence_count == 1
    assert Alert.objects.get().received_count == 2
    assert AuditEvent.objects.count() == events


def test_another_alert_about_the_same_problem_counts_on_its_ticket(sender, web):
    response = sender.post(
        AM,
        am_body(
            am_alert("1111111111111111"),
            am_alert("2222222222222222", alertname="NodeFilesystemSpaceFillingUp"),
        ),
    )

    outcomes = [a["outcome"] for a in response.json()["alerts"]]
    assert outcomes == ["opened", "counted"]
    ticket = Ticket.objects.get()
    assert ticket.occurrence_count == 2
    assert Alert.objects.filter(ticket=ticket).count() == 2
    assert AuditEvent.objects.filter(action="alert.counted", ticket_id=ticket.ticket_id).exists()


def test_an_alert_counts_on_the_ticket_the_agent_already_opened(sender, agent):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    response = sender.post(AM, am_body(am_alert()))

    assert response.json()["alerts"][0] == {
        "index": 0,
        "fingerprint": "a1b2c3d4e5f60718",
        "outcome": "counted",
        "ticket_id": result["ticket_id"],
        "message": f"counted on {result['ticket_id']}, the open disk ticket of web-01",
        "fields": {},
    }
    assert Ticket.objects.count() == 1


def test_an_opted_in_alert_heals_and_its_resolution_verifies_the_fix(sender, disk_still_full):
    agent = disk_still_full
    body = am_body(am_alert(warden_auto_remediation="true"))
    response = sender.post(AM, body)
    ticket_id = response.json()["alerts"][0]["ticket_id"]
    assert Decision.objects.get(ticket__ticket_id=ticket_id).outcome == "AUTO_HEAL"
    [action] = agent.take_actions()
    agent.report(action, ok=True)
    execution = Execution.objects.get(ticket__ticket_id=ticket_id)
    assert execution.state == "verifying"

    resolved = am_alert(warden_auto_remediation="true", status="resolved")
    resolved["endsAt"] = timezone.now().isoformat()
    response = sender.post(AM, am_body(resolved))

    assert response.json()["alerts"][0]["message"] == "resolved; verified 1 execution(s)"
    execution.refresh_from_db()
    assert execution.state == "succeeded"
    assert Ticket.objects.get(ticket_id=ticket_id).status == "resolved"
    succeeded = AuditEvent.objects.get(action="execution.succeeded")
    assert "alertmanager reported HostOutOfDiskSpace resolved" in succeeded.summary
    assert AuditEvent.objects.filter(action="alert.resolved", ticket_id=ticket_id).exists()


def test_an_alert_that_ended_before_the_fix_started_verifies_nothing(sender, disk_still_full):
    agent = disk_still_full
    ticket_id = sender.post(AM, am_body(am_alert(warden_auto_remediation="true"))).json()["alerts"][
        0
    ]["ticket_id"]
    [action] = agent.take_actions()
    agent.report(action, ok=True)

    resolved = am_alert(warden_auto_remediation="true", status="resolved")  # ended at 02:00
    sender.post(AM, am_body(resolved))

    assert Execution.objects.get(ticket__ticket_id=ticket_id).state == "verifying"
    assert Alert.objects.get().status == "resolved"


def test_a_resolved_alert_leaves_a_ticket_waiting_for_people_to_them(sender, web):
    sender.post(AM, am_body(am_alert()))

    response = sender.post(AM, am_body(am_alert(status="resolved")))

    assert response.json()["alerts"][0]["outcome"] == "resolved"
    ticket = Ticket.objects.get()
    assert ticket.is_open and ApprovalRequest.objects.filter(ticket=ticket).exists()
    assert AuditEvent.objects.filter(action="alert.resolved").count() == 1
    # and its resending changes nothing more
    again = sender.post(AM, am_body(am_alert(status="resolved")))
    assert again.json()["alerts"][0]["outcome"] == "repeated"
    assert AuditEvent.objects.filter(action="alert.resolved").count() == 1


def test_an_alert_firing_again_counts_and_after_its_ticket_closed_opens_another(sender, web, alice):
    sender.post(AM, am_body(am_alert()))
    sender.post(AM, am_body(am_alert(status="resolved")))

    again = sender.post(AM, am_body(am_alert()))
    assert again.json()["alerts"][0]["outcome"] == "counted"
    first = Ticket.objects.get()
    assert first.occurrence_count == 2
    assert AuditEvent.objects.filter(action="alert.refired").exists()

    close_ticket(first, actor=alice, resolved=True, reason="disk cleaned", now=timezone.now())
    later = sender.post(AM, am_body(am_alert()))

    assert later.json()["alerts"][0]["ticket_id"] == "AM-a1b2c3d4e5f60718-2"
    assert [t.is_open for t in Ticket.objects.order_by("opened_at")] == [False, True]


def test_an_alert_warden_cannot_place_is_named_and_the_others_kept(sender, web):
    response = sender.post(
        AM, am_body(am_alert("1111111111111111", instance="db-09:9100"), am_alert())
    )

    assert response.status_code == 200
    rejected, opened = response.json()["alerts"]
    assert rejected["outcome"] == "rejected" and rejected["fingerprint"] == "1111111111111111"
    assert rejected["fields"] == {
        "alerts[0].labels.instance": ["No registered host is named 'db-09' (manage.py add_host)."]
    }
    assert opened["outcome"] == "opened"
    assert response.json()["received"] == 1
    assert Alert.objects.get().fingerprint == "a1b2c3d4e5f60718"


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        (am_alert(instance=""), "alerts[0].labels"),
        (am_alert(alertname="SomethingOdd"), "alerts[0].labels.alertname"),
        (am_alert(category="teapot"), "alerts[0].labels.category"),
        ({**am_alert(), "fingerprint": ""}, "alerts[0].fingerprint"),
        ({**am_alert(), "status": "pending"}, "alerts[0].status"),
    ],
)
def test_when_no_alert_can_be_kept_the_request_is_refused_naming_the_field(
    sender, web, alert, field
):
    response = sender.post(AM, am_body(alert))

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Ticket.objects.exists() and not Alert.objects.exists()


def test_an_empty_or_malformed_body_is_refused(sender, web):
    assert sender.post(AM, {**am_body(am_alert()), "alerts": []}).status_code == 400
    response = sender.post(AM, "not json")
    assert response.status_code == 400


def test_only_alert_senders_may_send_alerts(api, bob, web, client):
    integrator = User.objects.create_user("bridge")
    integrator.groups.add(Group.objects.get(name="integrators"))

    assert api(integrator).post(AM, am_body(am_alert())).status_code == 403
    assert api(bob).post(AM, am_body(am_alert())).status_code == 403
    assert client.post(AM, am_body(am_alert()), content_type="application/json").status_code in (
        401,
        403,
    )
    assert not Ticket.objects.exists()


def test_a_service_token_for_alertmanager_comes_from_one_command(web, capsys):
    call_command("create_api_token", "alertmanager", "--service", "alert senders")
    key = capsys.readouterr().out.strip()

    service = User.objects.get(username="alertmanager")
    assert not service.has_usable_password()
    assert AuditEvent.objects.filter(action="user.created", object_id=str(service.pk)).exists()
    assert Api(key).post(AM, am_body(am_alert())).status_code == 200
    # and nothing else: not even opening tickets of its own, or reading them
    assert Api(key).post("/api/v1/feedback", {}).status_code == 403
    ticket = {"ticket_id": "OPS-1", "host": "web-01", "category": "disk", "description": "x"}
    assert Api(key).post("/api/v1/tickets", ticket).status_code == 403
    assert Api(key).get("/api/v1/tickets").status_code == 403


def test_the_generic_webhook_maps_fields_by_the_configured_map(sender, web, settings):
    settings.WARDEN_ALERT_WEBHOOK_FIELDS = {
        **settings.WARDEN_ALERT_WEBHOOK_FIELDS,
        "alerts": "events",
        "fingerprint": "id",
        "host": "entity.host",
        "category": "tags.category",
        "status": "state",
        "title": "check",
        "description": "output",
    }
    body = {
        "events": [
            {
                "id": "check-42",
                "entity": {"host": "web-01"},
                "tags": {"category": "disk"},
                "state": "critical",
                "check": "disk /var",
                "output": "/var at 97%",
            }
        ]
    }

    opened = sender.post(WEBHOOK, body).json()["alerts"][0]
    body["events"][0]["state"] = "ok"
    resolved = sender.post(WEBHOOK, body).json()["alerts"][0]

    assert opened["outcome"] == "opened" and opened["ticket_id"].startswith("WH-")
    ticket = Ticket.objects.get()
    assert (ticket.title, ticket.description, ticket.category) == (
        "disk /var",
        "/var at 97%",
        "disk",
    )
    assert resolved["outcome"] == "resolved"
    assert Alert.objects.get().status == "resolved"


def test_the_generic_webhook_names_the_mapped_field_it_could_not_find(sender, web):
    response = sender.post(WEBHOOK, [{"id": "x", "category": "disk"}])

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "[0].host": ["Name the alert's host (WARDEN_ALERT_WEBHOOK_FIELDS['host'])."]
    }
    assert sender.post(WEBHOOK, []).status_code == 400


def test_an_alerts_warden_labels_become_the_runbooks_parameters(sender, web):
    # given an alert about an abusive address, as a detection rule labels it
    alert = am_alert(category="security", warden_address="203.0.113.7")
    alert["labels"]["alertname"] = "BruteForceFromOneAddress"

    response = sender.post(AM, am_body(alert))

    # then its ticket carries the address and the decision the exact command with it
    assert response.status_code == 200, response.content
    ticket = Ticket.objects.get()
    assert ticket.parameters == {"address": "203.0.113.7"}
    decision = Decision.objects.get(ticket=ticket)
    assert decision.argv[decision.argv.index("--address") + 1] == "203.0.113.7"
    # a critical write: people approve it, two of them
    assert ApprovalRequest.objects.get(ticket=ticket).required_approvals == 2


def test_an_alerts_parameter_not_of_its_type_never_reaches_a_command(sender, web):
    alert = am_alert(category="security", warden_address="203.0.113.7 -j ACCEPT")
    alert["labels"]["alertname"] = "BruteForceFromOneAddress"

    sender.post(AM, am_body(alert))

    decision = Decision.objects.get()
    assert decision.argv == []
    assert any("cannot be run" in line for line in decision.reasons)
    assert not ApprovalRequest.objects.filter(status="pending").exists()


def test_the_labels_naming_the_host_and_category_are_not_parameters(sender, web):
    alert = am_alert(warden_host="web-01", warden_category="disk", warden_note="from-rule")

    sender.post(AM, am_body(alert))

    assert Ticket.objects.get().parameters == {"note": "from-rule"}
