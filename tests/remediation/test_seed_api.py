"""The seed's REST API with real tokens: opening tickets from other systems, reading them
with the seed's fields and logs, approving what waits, per role.

Personas: alice supervises, bob and carol approve, dave is compliance (read only).
"""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from governance.models import ApprovalRequest, AuditEvent, Decision
from governance.people.actions import issue_api_token
from remediation.actions import add_host, close_ticket
from remediation.models import Execution, Ticket
from tests.conftest import Api, token_for

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

# The seed's "Create Ticket with Auto-Remediation" body, with the host it is about.
SEED_TICKET = {
    "ticket_id": "INC-12345",
    "title": "Service down",
    "description": "Web service not responding on port 8080",
    "category": "server",
    "enable_auto_remediation": True,
}


@pytest.fixture
def web(db):
    host, _ = add_host("prod-web-01", now=timezone.now())
    return host


def open_ticket(api: Api, **changes: Any) -> Any:
    return api.post("/api/v1/tickets", {**SEED_TICKET, "host": "prod-web-01", **changes})


def decided(api: Api, body: dict) -> dict:
    """Open a ticket (202, processing) and read it back once its task decided it (the
    tests' tasks run at once, after the commit)."""
    response = api.post("/api/v1/tickets", body)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "processing"
    return api.get(f"/api/v1/tickets/{body['ticket_id']}").json()


# --- Tokens ---------------------------------------------------------------------------------


def test_a_token_is_printed_once_and_only_its_hash_is_stored(alice, capsys):
    call_command("create_api_token", "alice", "--expiry-days", "7")
    key = capsys.readouterr().out.strip()

    [stored] = AuthToken.objects.filter(user=alice)
    assert key not in (stored.digest, stored.token_key) and key.startswith(stored.token_key)
    assert stored.expiry - timezone.now() > timedelta(days=6)
    issued = AuditEvent.objects.get(action="token.issued")
    assert issued.actor == "system" and issued.object_id == str(alice.pk)
    assert key not in json.dumps(issued.data) + issued.summary
    assert Api(key).get("/api/v1/tickets").status_code == 200


def test_a_revoked_token_stops_working_at_once(alice, capsys):
    key = token_for(alice)
    assert Api(key).get("/api/v1/tickets").status_code == 200

    call_command("revoke_api_tokens", "alice", "--reason", "laptop lost")

    assert "1 API token of alice revoked" in capsys.readouterr().out
    response = Api(key).get("/api/v1/tickets")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    revoked = AuditEvent.objects.get(action="token.revoked")
    assert revoked.data["reason"] == "laptop lost"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["create_api_token", "nobody", "--expiry-days", "-1"], "--expiry-days must be 0"),
        (["create_api_token", "alice", "--expiry-days", "-1"], "--expiry-days must be 0"),
        (["create_api_token", "alice", "--expiry-days", "4000"], "1 to 3650 days"),
        (["revoke_api_tokens", "nobody"], "no user named nobody"),
    ],
)
def test_the_token_commands_refuse_what_they_cannot_do(alice, argv, says):
    with pytest.raises(CommandError, match=says):
        call_command(*argv)
    assert not AuthToken.objects.exists()


def test_a_new_name_is_created_as_an_integrator_and_told(db, capsys):
    call_command("create_api_token", "alertbridge", "--expiry-days", "90")

    out, err = capsys.readouterr()
    assert "created alertbridge as a service user in the integrators role" in err
    user = User.objects.get(username="alertbridge")
    assert list(user.groups.values_list("name", flat=True)) == ["integrators"]
    assert not user.has_usable_password()
    assert Api(out.strip()).get("/api/v1/tickets").status_code == 200


def test_a_token_until_revoked_has_no_expiry(alice, capsys):
    call_command("create_api_token", "alice", "--expiry-days", "0")
    assert AuthToken.objects.get().expiry is None
    assert "until revoked" in AuditEvent.objects.get(action="token.issued").summary


def test_a_superuser_revokes_a_token_in_the_admin_saying_why(alice, client):
    token, key = issue_api_token(
        alice, actor=None, expiry_days=30, reason="test", now=timezone.now()
    )
    client.force_login(alice)  # a supervisor does not manage tokens
    assert client.get("/admin/knox/authtoken/").status_code == 403
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))

    client.post(
        "/admin/knox/authtoken/",
        {
            "action": "revoke_action",
            "_selected_action": [token.pk],
            "confirmed": "yes",
            "note": "left the team",
        },
    )

    assert not AuthToken.objects.exists()
    revoked = AuditEvent.objects.get(action="token.revoked")
    assert (revoked.actor, revoked.data["reason"]) == ("user:root", "left the team")
    assert Api(key).get("/api/v1/tickets").status_code == 401


def test_an_expired_token_is_refused(alice):
    token, key = issue_api_token(
        alice, actor=None, expiry_days=1, reason="test", now=timezone.now()
    )
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert Api(key).get("/api/v1/tickets").status_code == 401


@pytest.mark.parametrize("persona", ["bob", "dave"])
def test_a_token_acts_with_its_users_roles_only(request, persona, web):
    # approvers and compliance read tickets, and open none
    reader = Api(token_for(request.getfixturevalue(persona)))
    assert reader.get("/api/v1/tickets").status_code == 200
    response = open_ticket(reader)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not Ticket.objects.exists()


def test_an_agents_host_key_opens_no_people_endpoint(agent, alice):
    as_agent = Client(headers={"authorization": f"Bearer {agent.key}"})
    for path in ("/api/v1/tickets", "/api/v1/stats/reliability", "/api/v1/patterns"):
        assert as_agent.get(path).status_code == 401, path
    response = as_agent.post(
        "/api/v1/tickets", json.dumps({**SEED_TICKET, "host": "web-01"}), "application/json"
    )
    assert response.status_code == 401
    assert not Ticket.objects.exists()


def test_a_people_token_is_no_agent_key(agent, alice):
    key = token_for(alice)
    for header in (f"Token {key}", f"Bearer {key}"):
        response = agent.client.post(
            "/api/v1/metrics",
            json.dumps(agent.sample("disk")),
            content_type="application/json",
            HTTP_AUTHORIZATION=header,
        )
        assert response.status_code == 401, header
    assert not Ticket.objects.exists()


def test_an_inactive_users_token_is_refused(alice):
    key = token_for(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert Api(key).get("/api/v1/tickets").status_code == 401


# --- Opening tickets --------------------------------------------------------------------------


def test_the_seeds_ticket_is_answered_as_in_its_example(api, alice, web):
    response = open_ticket(api(alice))

    assert response.status_code == 202, response.content
    body = response.json()
    assert list(body)[:5] == [
        "ticket_id",
        "status",
        "auto_remediation_enabled",
        "confidence_score",
        "reliability_score",
    ]
    assert body["ticket_id"] == "INC-12345"
    assert body["status"] == "processing"
    assert body["auto_remediation_enabled"] is True
    assert body["confidence_score"] == 0.0
    assert body["reliability_score"] is None
    assert response["Location"].endswith("/api/v1/tickets/INC-12345")
    ticket = Ticket.objects.get(ticket_id="INC-12345")
    assert (ticket.source, ticket.host, ticket.description) == (
        "integrator",
        web,
        SEED_TICKET["description"],
    )
    opened = AuditEvent.objects.get(action="ticket.opened", ticket_id="INC-12345")
    assert opened.actor == "user:alice"
    assert AuditEvent.objects.filter(action="decision.made", ticket_id="INC-12345").exists()


def test_an_integrator_service_user_opens_tickets(api, web):
    service = User.objects.create_user("alertbridge")
    service.groups.add(Group.objects.get(name="integrators"))

    assert open_ticket(api(service)).status_code == 202


def test_automatic_remediation_is_off_unless_the_caller_asks(api, alice, web):
    # given a server ticket posted without the opt-in
    body = {k: v for k, v in SEED_TICKET.items() if k != "enable_auto_remediation"}
    ticket = decided(api(alice), {**body, "host": "prod-web-01"})

    # then it is off, and a person handles it
    assert ticket["auto_remediation_enabled"] is False
    decision = Decision.objects.get(ticket__ticket_id="INC-12345")
    assert decision.outcome == "HITL_REQUIRED"
    assert any("not enabled for this ticket" in line for line in decision.reasons)
    assert not Execution.objects.exists()


@pytest.fixture
def disk_still_full(agent, alice):
    """The host's newest reading shows a full disk, and no ticket is open for it (the one
    its agent opened was resolved by hand)."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    close_ticket(ticket, actor=alice, resolved=True, reason="cleaned by hand", now=timezone.now())
    return agent


@pytest.mark.parametrize(
    ("opt_in", "outcome", "executions"), [(False, "HITL_REQUIRED", 0), (True, "AUTO_HEAL", 1)]
)
def test_the_opt_in_decides_whether_a_confirmed_problem_heals_by_itself(
    api, alice, disk_still_full, opt_in, outcome, executions
):
    body = decided(
        api(alice),
        {
            "ticket_id": "OPS-7",
            "host": "web-01",
            "category": "disk",
            "description": "/var is full on web-01",
            "enable_auto_remediation": opt_in,
        },
    )

    assert body["remediation_decision"]["outcome"] == outcome
    assert body["confidence_score"] > 0.5  # the host's own reading stands behind it
    assert Execution.objects.filter(ticket__ticket_id="OPS-7").count() == executions
    if not opt_in:
        assert ApprovalRequest.objects.filter(ticket__ticket_id="OPS-7").exists()


def test_a_problem_no_reading_shows_needs_a_person_whatever_the_opt_in(api, alice, agent):
    agent.post_metrics(agent.sample())  # healthy

    body = decided(
        api(alice),
        {
            "ticket_id": "OPS-8",
            "host": "web-01",
            "category": "disk",
            "description": "disk full",
            "enable_auto_remediation": True,
        },
    )

    decision = body["remediation_decision"]
    assert decision["outcome"] == "HITL_REQUIRED"
    assert "does not show a disk problem" in decision["reasoning"][0]
    assert not Execution.objects.exists()


def test_escalation_facts_send_the_ticket_to_people(api, alice, disk_still_full):
    body = decided(
        api(alice),
        {
            "ticket_id": "OPS-9",
            "host": "web-01",
            "category": "disk",
            "description": "/var is full and invoices stopped",
            "enable_auto_remediation": True,
            "affects_billing": True,
            "customer_impact_minutes": 45,
            "security_severity": "low",
        },
    )

    reasons = body["remediation_decision"]["reasoning"]
    assert any("affects billing" in line for line in reasons)
    assert any("45 minutes exceeds the 30-minute SLA" in line for line in reasons)
    assert body["remediation_decision"]["outcome"] == "HITL_REQUIRED"
    assert not Execution.objects.filter(ticket__ticket_id="OPS-9").exists()


def test_a_taken_ticket_id_is_refused_with_409_naming_it(api, alice, web):
    supervisor = api(alice)
    assert open_ticket(supervisor).status_code == 202
    events = AuditEvent.objects.count()

    response = open_ticket(supervisor, category="network", title="Something else")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "duplicate" and "ticket_id" in error["fields"]
    assert Ticket.objects.get().category == "server"  # the stored one is untouched
    assert AuditEvent.objects.count() == events


def test_a_second_open_ticket_for_the_same_problem_is_refused(api, alice, web):
    assert open_ticket(api(alice)).status_code == 202

    response = open_ticket(api(alice), ticket_id="INC-12346")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "open_ticket_exists"
    assert set(error["fields"]) == {"host", "category"}
    assert "INC-12345" in error["message"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ticket_id": None}, "ticket_id"),
        ({"ticket_id": "INC-000042"}, "ticket_id"),  # Warden's own numbering
        ({"ticket_id": "a/b"}, "ticket_id"),
        ({"category": "kitchen"}, "category"),
        ({"host": "nowhere-99"}, "host"),
        ({"host": "PROD-WEB-01"}, "host"),  # names a host exactly as registered
        ({"priority": "urgent"}, "priority"),
        ({"customer_impact_minutes": -5}, "customer_impact_minutes"),
        ({"security_severity": "severe"}, "security_severity"),
        ({"enable_auto_remediation": "maybe"}, "enable_auto_remediation"),
        ({"title": "", "description": ""}, "description"),
    ],
)
def test_bad_input_is_refused_naming_the_field(api, alice, web, changes, field):
    body = {**SEED_TICKET, "host": "prod-web-01", **changes}
    body = {k: v for k, v in body.items() if v is not None}

    response = api(alice).post("/api/v1/tickets", body)

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Ticket.objects.exists()


def test_a_body_that_is_not_json_is_refused(api, alice, web):
    response = api(alice).post("/api/v1/tickets", "{not json")
    assert response.status_code == 400


# --- Reading tickets -----------------------------------------------------------------------


def test_a_healed_ticket_reads_with_the_seeds_fields(agent, api, dave):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [action] = agent.take_actions()
    agent.report(action, output="freed 4 GB")
    agent.post_metrics(agent.sample())

    body = api(dave).get(f"/api/v1/tickets/{result['ticket_id']}").json()

    assert body["status"] == "resolved"
    assert body["auto_remediation_enabled"] is True
    assert body["auto_remediation_executed"] is True
    [suggested] = body["suggested_actions"]
    assert (suggested["runbook"], suggested["system"]) == ("clean-temp-and-rotate-logs", "web-01")
    decision = body["remediation_decision"]
    assert decision["allowed"] and not decision["requires_approval"]
    assert decision["action_type"] == "safe_write" and decision["reasoning"]
    assert body["remediation_results"]["success"] is True
    [ran] = body["remediation_results"]["executed_actions"]
    assert ran["automatic"] and ran["output"] == "freed 4 GB"
    breakdown = body["reliability_breakdown"]
    assert breakdown["overall_score"] == body["reliability_score"]
    assert set(breakdown["breakdown"]) == {
        "ai_confidence",
        "human_validation",
        "success_history",
        "pattern_recognition",
    }
    # what it returned before stays
    assert {"decisions", "executions", "occurrence_count", "host"} <= set(body)


def test_the_list_keeps_its_shape(agent, api, dave):
    agent.post_metrics(agent.sample("disk"))
    [row] = api(dave).get("/api/v1/tickets").json()["results"]
    assert set(row) == {
        "ticket_id",
        "title",
        "host",
        "category",
        "status",
        "severity",
        "confidence",
        "occurrence_count",
        "opened_at",
        "opened_by",
        "last_seen_at",
        "resolved_at",
        "resolution",
        "decisions",
        "executions",
    }


def test_remediation_logs_hold_what_ran_and_every_audit_event(agent, api, dave):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [action] = agent.take_actions()
    agent.report(action, output="freed 4 GB")

    response = api(dave).get(f"/api/v1/tickets/{result['ticket_id']}/remediation-logs")

    assert response.status_code == 200
    logs = response.json()
    [execution] = logs["executions"]
    assert execution["output"] == "freed 4 GB" and execution["automatic"] is True
    expected = AuditEvent.objects.filter(ticket_id=result["ticket_id"]).order_by("sequence")
    assert [e["sequence"] for e in logs["events"]] == [e.sequence for e in expected]
    assert "execution.queued" in {e["action"] for e in logs["events"]}


def test_an_unknown_ticket_is_404(api, dave):
    response = api(dave).get("/api/v1/tickets/NOPE-1")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- Approving ----------------------------------------------------------------------------


@pytest.fixture
def waiting(agent):
    """A DNS resolver switch (a critical write: two approvers) waiting for people."""
    [result] = agent.post_metrics(agent.sample("dns")).json()["results"]
    return Ticket.objects.get(ticket_id=result["ticket_id"])


def approve(api: Api, ticket: Ticket, **body: Any) -> Any:
    return api.post(f"/api/v1/tickets/{ticket.ticket_id}/approve-remediation", body)


def test_approvers_approve_as_themselves_and_the_last_approval_queues_it(api, bob, carol, waiting):
    first = approve(api(bob), waiting, approve=True, comment="resolver is flapping")
    assert first.status_code == 200, first.content
    assert (first.json()["status"], first.json()["approvals"]) == ("pending", 1)
    assert first.json()["execution_id"] is None

    second = approve(api(carol), waiting, approve=True, comment="agreed")

    assert second.json()["status"] == "approved"
    assert second.json()["approver"] == "carol"
    execution = Execution.objects.get(pk=second.json()["execution_id"])
    assert execution.ticket == waiting and execution.requested_by.username == "carol"
    actors = AuditEvent.objects.filter(action="approval.approved").values_list("actor", flat=True)
    assert sorted(actors) == ["user:bob", "user:carol"]


def test_an_approver_other_than_the_tokens_user_is_refused_naming_both(api, bob, waiting):
    response = approve(api(bob), waiting, approve=True, approver="john.doe@company.com")

    assert response.status_code == 400
    [message] = response.json()["error"]["fields"]["approver"]
    assert "bob (bob@example.com)" in message and "john.doe@company.com" in message
    assert not waiting.approval_requests.get().approvals.exists()


@pytest.mark.parametrize("approver", ["bob", "bob@example.com", "Bob@Example.COM"])
def test_naming_yourself_as_the_approver_is_fine(api, bob, waiting, approver):
    # the seed's example body carries the approver (an email) and the ticket_id
    response = approve(
        api(bob), waiting, approve=True, approver=approver, ticket_id=waiting.ticket_id
    )
    assert response.status_code == 200, response.content


def test_a_rejection_needs_a_comment_and_is_a_veto(api, bob, waiting):
    refused = approve(api(bob), waiting, approve=False, comment=" ")
    assert refused.status_code == 400
    assert "comment" in refused.json()["error"]["fields"]

    vetoed = approve(api(bob), waiting, approve=False, comment="wrong resolver")

    assert vetoed.json()["status"] == "rejected"
    assert vetoed.json()["ticket_status"] == "escalated"
    assert AuditEvent.objects.get(action="approval.rejected").data["comment"] == "wrong resolver"


@pytest.mark.parametrize(("persona", "status_code"), [("dave", 403), ("alice", 200)])
def test_who_may_approve_over_the_api(request, api, waiting, persona, status_code):
    user = request.getfixturevalue(persona)
    response = approve(api(user), waiting, approve=True)
    assert response.status_code == status_code
    assert waiting.approval_requests.get().approvals.exists() == (status_code == 200)


def test_nothing_waiting_is_409(api, bob, agent):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    response = approve(api(bob), ticket, approve=True)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_pending_approval"


def test_approve_needs_its_verdict(api, bob, waiting):
    response = approve(api(bob), waiting, comment="forgot the verdict")
    assert response.status_code == 400
    assert "approve" in response.json()["error"]["fields"]
