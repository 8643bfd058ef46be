"""The seed's "API Usage" examples, each body exactly as the seed writes it, sent through
the real API with a token from `manage.py create_api_token`: the token is the one addition.

The seed's ticket names no host, so between its create and its approve examples a
supervisor names the host (POST /api/v1/tickets/{id}/host): the seed's approval is for a
ticket waiting for one, and Warden decides nothing before it knows where it would run.
"""

import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from governance.models import AuditEvent
from remediation.actions import add_host
from remediation.models import Execution, Ticket
from tests.conftest import Api, make_user, token_for

# The seed's bodies, verbatim (its JSON, with its comments removed).
CREATE = """{
"ticket_id": "INC-12345",
"title": "Service down",
"description": "Web service not responding on port 8080",
"category": "server",
"enable_auto_remediation": true
}"""
CREATE_ANSWER = {
    "ticket_id": "INC-12345",
    "status": "processing",
    "auto_remediation_enabled": True,
    "confidence_score": 0.0,
    "reliability_score": None,
}
FEEDBACK = """{
"ticket_id": "INC-12345",
"feedback_type": "positive",
"rating": 5,
"was_helpful": true,
"resolution_accurate": true,
"actions_worked": true,
"comment": "Perfect resolution, service is back up!"
}"""
APPROVE = """{
"ticket_id": "INC-12345",
"approve": true,
"approver": "john.doe@company.com",
"comment": "Approved for execution"
}"""


def token_from_command(capsys, username: str) -> Api:
    call_command("create_api_token", username)
    return Api(capsys.readouterr().out.strip())


@pytest.fixture
def integrator(db, capsys, django_capture_on_commit_callbacks) -> Api:
    """The seed's caller: a token for a name nobody has yet (created as an integrator)."""
    caller = token_from_command(capsys, "itsm")
    caller.capture = django_capture_on_commit_callbacks
    return caller


@pytest.fixture
def john(db, capsys, django_capture_on_commit_callbacks) -> Api:
    """The seed's approver, a person with an approver's role and that email."""
    person = make_user("john.doe", "approvers")
    User.objects.filter(pk=person.pk).update(email="John.Doe@company.com")
    caller = token_from_command(capsys, "john.doe")
    caller.capture = django_capture_on_commit_callbacks
    return caller


@pytest.fixture
def web(db):
    host, _ = add_host("prod-web-01", now=timezone.now())
    return host


def test_create_answers_as_the_seed_shows(integrator, web):
    response = integrator.post("/api/v1/tickets", CREATE)

    assert response.status_code == 202, response.content
    body = response.json()
    assert list(body)[:5] == list(CREATE_ANSWER)
    assert {key: body[key] for key in CREATE_ANSWER} == CREATE_ANSWER
    assert response["Location"] == "/api/v1/tickets/INC-12345"


def test_check_ticket_status_reads_the_seeds_fields(integrator, web):
    integrator.post("/api/v1/tickets", CREATE)

    response = integrator.client.get("/api/v1/tickets/INC-12345")

    assert response.status_code == 200, response.content
    body = response.json()
    seed_fields = {
        "ticket_id",
        "status",
        "resolution",
        "suggested_actions",
        "confidence_score",
        "reliability_score",
        "reliability_breakdown",
        "auto_remediation_enabled",
        "auto_remediation_executed",
        "remediation_decision",
        "remediation_results",
    }
    assert seed_fields <= set(body)
    # triaged: the text names no host, so it waits for a person to name one
    assert (body["status"], body["host"]) == ("escalated", None)


def test_submit_feedback_as_the_seed_shows(integrator, web):
    integrator.post("/api/v1/tickets", CREATE)

    response = integrator.post("/api/v1/feedback", FEEDBACK)

    assert response.status_code == 201, response.content
    assert response.json()["feedback_type"] == "positive"
    assert AuditEvent.objects.filter(action="feedback.given", ticket_id="INC-12345").exists()


def test_approve_remediation_as_the_seed_shows_with_the_approvers_email(
    api, alice, integrator, john, web
):
    # given the seed's ticket, its host named by a supervisor, waiting for approval
    assert integrator.post("/api/v1/tickets", CREATE).status_code == 202
    named = api(alice).post(
        "/api/v1/tickets/INC-12345/host", {"host": "prod-web-01", "reason": "on-call says so"}
    )
    assert named.json()["status"] == "awaiting_approval", named.content
    [suggested] = named.json()["suggested_actions"]
    assert (suggested["runbook"], suggested["system"]) == ("restart-web-service", "prod-web-01")

    # when the seed's approve body is sent with John's token (his email, any case)
    response = john.post("/api/v1/tickets/INC-12345/approve-remediation", APPROVE)

    # then it is approved as John, and the restart is queued
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["approver"]) == ("approved", "john.doe")
    execution = Execution.objects.get(pk=response.json()["execution_id"])
    assert execution.runbook.name == "restart-web-service"
    assert Ticket.objects.get().status == "remediating"


def test_the_seeds_approve_body_from_another_token_is_refused_naming_both(
    api, alice, bob, integrator, web
):
    integrator.post("/api/v1/tickets", CREATE)
    api(alice).post("/api/v1/tickets/INC-12345/host", {"host": "prod-web-01", "reason": "x"})

    response = Api(token_for(bob)).post(
        "/api/v1/tickets/INC-12345/approve-remediation", json.loads(APPROVE)
    )

    assert response.status_code == 400
    [message] = response.json()["error"]["fields"]["approver"]
    assert message == (
        "This token belongs to bob (bob@example.com); a token approves only as its own "
        "user, not as john.doe@company.com."
    )
