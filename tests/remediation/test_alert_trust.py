"""Issue 20's alert findings, each refused through the alert endpoints: impossible dates
and bad alerts never answer 500 nor drop the rest of a batch, alerts' ticket ids are
theirs alone, an alert only ever counts on a ticket of its own host and category, a
resolved alert is evidence only when it can be, and labels are capped and stored once."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from feedback.models import Pattern
from governance.models import AuditEvent, Decision
from remediation.actions import add_host, close_ticket
from remediation.models import Alert, Execution, Ticket
from scoring.models import MetricSample
from tests.conftest import Api
from tests.remediation.test_alerts import AM, WEBHOOK, am_alert, am_body

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


@pytest.fixture
def integrator(db, api) -> Api:
    bridge = User.objects.create_user("bridge")
    bridge.groups.add(Group.objects.get(name="integrators"))
    return api(bridge)


@pytest.fixture
def hosts(db):
    now = timezone.now()
    return add_host("web-01", now=now)[0], add_host("web-02", now=now)[0]


def at(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def outcomes(response) -> list[str]:
    return [alert["outcome"] for alert in response.json()["alerts"]]


# --- Intake: each alert validated on its own; never a 500, never a dropped batch -------------


@pytest.mark.parametrize(
    ("starts_at", "why"),
    [
        ("2026-02-30T01:00:00Z", "not a date"),
        ("2026-12-02T25:00:00Z", "not a time"),
        ("2026-12-02T01:00:00+99:00", "not an offset"),
        ("2026-12-02T01:00:00", "no offset"),
        ("yesterday", "not a timestamp"),
        ("9999-12-31T23:59:59Z", "far future"),
        ("1990-01-01T00:00:00Z", "far past"),
    ],
)
def test_an_impossible_start_is_named_and_the_rest_of_the_batch_is_kept(
    sender, hosts, starts_at, why
):
    bad = {**am_alert("1111111111111111"), "startsAt": starts_at}

    response = sender.post(AM, am_body(bad, am_alert()))

    assert response.status_code == 200, (why, response.content)
    rejected, opened = response.json()["alerts"]
    assert rejected["outcome"] == "rejected" and "alerts[0].startsAt" in rejected["fields"]
    assert opened["outcome"] == "opened"
    assert Alert.objects.get().fingerprint == "a1b2c3d4e5f60718"


def test_an_alert_the_serializer_refuses_is_named_and_the_rest_of_the_batch_is_kept(sender, hosts):
    pending = {**am_alert("1111111111111111"), "status": "pending"}
    too_long = {**am_alert(), "fingerprint": "f" * 200}
    no_labels = {
        key: value for key, value in am_alert("3333333333333333").items() if key != "labels"
    }

    response = sender.post(AM, am_body(pending, too_long, no_labels, am_alert("4444444444444444")))

    assert response.status_code == 200, response.content
    assert outcomes(response) == ["rejected", "rejected", "rejected", "opened"]
    fields = [set(alert["fields"]) for alert in response.json()["alerts"][:3]]
    assert fields == [{"alerts[0].status"}, {"alerts[1].fingerprint"}, {"alerts[2].labels"}]


def test_a_control_character_in_an_alert_is_named_not_stored(sender, hosts):
    nul_key = am_alert("1111111111111111")
    nul_key["labels"]["bad\u0000key"] = "x"
    response = sender.post(
        AM,
        am_body({**am_alert(), "fingerprint": "ab\u0000cd"}, nul_key, am_alert("2222222222222222")),
    )

    assert response.status_code == 200, response.content
    assert outcomes(response) == ["rejected", "rejected", "opened"]
    webhook = sender.post(WEBHOOK, [{"id": "x\u0000", "host": "web-01", "category": "disk"}])
    assert webhook.status_code == 400 and "[0].id" in webhook.json()["error"]["fields"]


def test_one_bad_webhook_alert_never_drops_the_others(sender, hosts):
    body = [
        "not an object",
        {"id": "check-1", "category": "disk"},
        {"id": "check-2", "host": "web-01", "category": "disk", "description": "d" * 9000},
        {"id": "check-3", "host": "web-01", "category": "disk", "title": "disk /var"},
    ]

    response = sender.post(WEBHOOK, body)

    assert response.status_code == 200, response.content
    assert outcomes(response) == ["rejected", "rejected", "rejected", "opened"]
    fields = [set(alert["fields"]) for alert in response.json()["alerts"][:3]]
    assert fields == [{"[0]"}, {"[1].host"}, {"[2].description"}]


# --- Ticket ids of alerts: a namespace nobody else can create in -----------------------------


@pytest.mark.parametrize("ticket_id", ["AM-a1b2c3d4e5f60718-1", "wh-check42-1", "Am-x"])
def test_an_integrator_cannot_open_a_ticket_with_an_alerts_id(integrator, hosts, ticket_id):
    body = {"ticket_id": ticket_id, "host": "web-02", "category": "disk", "description": "x"}

    response = integrator.post("/api/v1/tickets", body)

    assert response.status_code == 400, response.content
    assert "ticket_id" in response.json()["error"]["fields"]
    assert not Ticket.objects.exists()


def test_a_closed_ticket_holding_an_alerts_id_gets_the_alert_a_new_id_not_a_500(
    sender, hosts, alice
):
    # given a ticket stored under the id the alert would use, opened before the rule and closed
    squatter = Ticket.objects.create(
        ticket_id="AM-a1b2c3d4e5f60718-1", title="old", host=hosts[1], category="disk"
    )
    close_ticket(squatter, actor=alice, resolved=True, reason="old", now=timezone.now())

    response = sender.post(AM, am_body(am_alert(), am_alert("2222222222222222", instance="web-02")))

    assert response.status_code == 200, response.content
    assert outcomes(response) == ["opened", "opened"]
    opened = Ticket.objects.get(ticket_id=response.json()["alerts"][0]["ticket_id"])
    assert opened.ticket_id != squatter.ticket_id and opened.host == hosts[0]


def test_a_fingerprint_equal_to_anothers_digest_never_meets_its_closed_ticket(sender, hosts, alice):
    long_one = "long-" + "x" * 100
    first = sender.post(AM, am_body(am_alert(long_one))).json()["alerts"][0]
    close_ticket(
        Ticket.objects.get(ticket_id=first["ticket_id"]),
        actor=alice,
        resolved=True,
        reason="done",
        now=timezone.now(),
    )
    # the middle of the long one's id, sent as a fingerprint of its own
    digest = first["ticket_id"].split("-")[1]

    response = sender.post(AM, am_body(am_alert(digest)))

    assert response.status_code == 200, response.content
    [again] = response.json()["alerts"]
    assert again["outcome"] == "opened" and again["ticket_id"] != first["ticket_id"]


# --- An alert counts only on a ticket of its own host and category ---------------------------


def test_host_a_alert_and_its_resolution_never_touch_host_b_ticket(sender, hosts):
    web01, _ = hosts
    # host B's ticket opened by an alert with the fingerprint host A's alert then carries
    b = sender.post(AM, am_body(am_alert(instance="web-02"))).json()["alerts"][0]

    fired = sender.post(AM, am_body(am_alert(instance="web-01"))).json()["alerts"][0]
    resolved = sender.post(AM, am_body(am_alert(instance="web-01", status="resolved")))

    assert fired["outcome"] == "opened" and fired["ticket_id"] != b["ticket_id"]
    assert Ticket.objects.get(ticket_id=fired["ticket_id"]).host == web01
    assert resolved.json()["alerts"][0]["ticket_id"] == fired["ticket_id"]
    b_ticket = Ticket.objects.get(ticket_id=b["ticket_id"])
    assert b_ticket.occurrence_count == 1
    assert Alert.objects.get(ticket=b_ticket).status == "firing"
    assert Alert.objects.get(ticket__host=web01).status == "resolved"


def test_a_squatted_open_ticket_with_the_alerts_id_never_receives_another_hosts_alert(
    sender, hosts
):
    web01, web02 = hosts
    squatter = Ticket.objects.create(
        ticket_id="AM-a1b2c3d4e5f60718-1", title="squat", host=web02, category="disk"
    )

    fired = sender.post(AM, am_body(am_alert(instance="web-01"))).json()["alerts"][0]
    sender.post(AM, am_body(am_alert(instance="web-01", status="resolved")))

    assert fired["outcome"] == "opened" and fired["ticket_id"] != squatter.ticket_id
    assert Ticket.objects.get(ticket_id=fired["ticket_id"]).host == web01
    squatter.refresh_from_db()
    assert squatter.occurrence_count == 1 and not squatter.alerts.exists()


# --- Evidence from a resolved alert ----------------------------------------------------------


@pytest.fixture
def verifying(agent, settings):
    """web-01 healed its disk by itself and waits for verification (its newest reading is
    from before the fix)."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    [action] = agent.take_actions()
    agent.report(action, ok=True)
    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "verifying"
    return execution


def attempts(execution: Execution) -> tuple[int, int] | None:
    pattern = Pattern.objects.filter(pk=execution.ticket.pattern_id).first()
    return pattern and (pattern.auto_remediation_attempts, pattern.auto_remediation_successes)


def test_an_alert_resolved_in_2036_on_a_host_still_at_97_percent_verifies_nothing(
    sender, verifying, agent
):
    # fresh readings still show the full disk
    agent.post_metrics(agent.sample("disk"))
    before = attempts(verifying)
    started = verifying.started_at - timedelta(minutes=5)
    firing = {**am_alert("9999999999999999"), "startsAt": at(started)}
    resolved = {**firing, "status": "resolved", "endsAt": "2036-01-01T00:00:00Z"}

    response = sender.post(AM, am_body(firing, resolved))

    assert outcomes(response) == ["counted", "rejected"]
    assert "alerts[1].endsAt" in response.json()["alerts"][1]["fields"]
    verifying.refresh_from_db()
    assert verifying.state == "verifying" and verifying.ticket.is_open
    assert attempts(verifying) == before


def test_an_alert_resolved_now_does_not_outweigh_fresh_readings_still_showing_it(
    sender, verifying, agent
):
    agent.post_metrics(agent.sample("disk"))
    firing = {
        **am_alert("9999999999999999"),
        "startsAt": at(verifying.started_at - timedelta(minutes=5)),
    }
    resolved = {**firing, "status": "resolved", "endsAt": at(timezone.now())}

    response = sender.post(AM, am_body(firing, resolved))

    assert outcomes(response) == ["counted", "resolved"]
    assert response.json()["alerts"][1]["message"] == "resolved"
    verifying.refresh_from_db()
    assert verifying.state == "verifying"


def test_a_resolved_alert_about_another_host_verifies_nothing(sender, verifying):
    add_host("web-02", now=timezone.now())
    started = at(verifying.started_at - timedelta(minutes=5))
    firing = {**am_alert("9999999999999999"), "startsAt": started}
    elsewhere = {
        **am_alert("9999999999999999", status="resolved", instance="web-02"),
        "startsAt": started,
        "endsAt": at(timezone.now()),
    }

    response = sender.post(AM, am_body(firing, elsewhere))

    assert outcomes(response) == ["counted", "ignored"]
    verifying.refresh_from_db()
    assert verifying.state == "verifying"


def test_a_resolved_alert_that_started_after_the_fix_verifies_nothing(sender, verifying):
    fixed = verifying.started_at
    later = {**am_alert("9999999999999999"), "startsAt": at(fixed + timedelta(seconds=1))}
    resolved = {**later, "status": "resolved", "endsAt": at(fixed + timedelta(seconds=2))}

    response = sender.post(AM, am_body(later, resolved))

    assert outcomes(response) == ["counted", "resolved"]
    verifying.refresh_from_db()
    assert verifying.state == "verifying"


def test_a_resolved_alert_of_the_same_host_and_category_that_spans_the_fix_verifies_it(
    sender, verifying
):
    firing = {
        **am_alert("9999999999999999"),
        "startsAt": at(verifying.started_at - timedelta(minutes=5)),
    }
    resolved = {**firing, "status": "resolved", "endsAt": at(timezone.now())}

    response = sender.post(AM, am_body(firing, resolved))

    assert response.json()["alerts"][1]["message"] == "resolved; verified 1 execution(s)"
    verifying.refresh_from_db()
    assert verifying.state == "succeeded"


def test_a_29_day_old_reading_does_not_confirm_an_alert_for_automatic_healing(sender, agent, alice):
    # web-01's newest reading shows a full disk, its ticket closed by hand, 29 days ago
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    close_ticket(ticket, actor=alice, resolved=True, reason="by hand", now=timezone.now())
    old = timezone.now() - timedelta(days=29)
    MetricSample.objects.update(taken_at=old, received_at=old, observed_at=old)

    response = sender.post(AM, am_body(am_alert(warden_auto_remediation="true")))

    ticket_id = response.json()["alerts"][0]["ticket_id"]
    assert Decision.objects.get(ticket__ticket_id=ticket_id).outcome == "HITL_REQUIRED"


# --- Labels: capped, and stored once ---------------------------------------------------------


def test_a_500_kb_label_is_named_and_the_rest_of_the_batch_is_kept(sender, hosts):
    huge = am_alert("1111111111111111", runbook="x" * 500_000)
    many = am_alert("2222222222222222", **{f"l{i}": "v" for i in range(200)})

    response = sender.post(AM, am_body(huge, many, am_alert()))

    assert response.status_code == 200, response.content
    assert outcomes(response) == ["rejected", "rejected", "opened"]
    assert "alerts[0].labels.runbook" in response.json()["alerts"][0]["fields"]
    assert "alerts[1].labels" in response.json()["alerts"][1]["fields"]


def test_an_alerts_labels_are_stored_on_its_row_not_copied_into_its_audit_events(sender, hosts):
    note = "n" * 1000
    sender.post(AM, am_body(am_alert(note=note)))
    sender.post(AM, am_body(am_alert("2222222222222222", note=note)))
    sender.post(AM, am_body(am_alert(status="resolved", note=note)))

    assert Alert.objects.filter(labels__note=note).count() == 2
    events = AuditEvent.objects.filter(
        action__in=["ticket.opened", "alert.counted", "alert.resolved"]
    )
    assert events.count() == 3
    for audited in events:
        assert note not in json.dumps(audited.data), audited.action
    counted = events.get(action="alert.counted")
    assert counted.data["alert_id"] == Alert.objects.get(fingerprint="2222222222222222").pk
