"""Reading is scoped like writing: through /api/v1/audit-events (and a ticket's
remediation logs and evidence) an integrator reads what it did and the events of the
tickets it opened, never another's token issues, access changes, pause reasons or
rejection notes; the people's roles read the whole trail. With the permission matrix of
the audit-events endpoint for every role, the service roles among them."""

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from governance.models import AuditEvent, Pause
from governance.pauses.actions import pause_automation
from tests.conftest import make_user
from tests.governance.admin_pages import logged_in

EVENTS = "/api/v1/audit-events"
OWN_TICKET = {
    "ticket_id": "INC-777",
    "title": "Service down",
    "description": "Web service not responding on port 8080",
    "category": "server",
    "host": "web-01",
}


def service_user(name: str, role: str) -> User:
    person = User.objects.create_user(name)
    person.groups.add(Group.objects.get(name=role))
    return person


@pytest.fixture
def world(agent, api, alice, bob) -> dict[str, Any]:
    """An integrator's own ticket, and around it what others did: a ticket waiting for
    approval that bob rejected with a note, a pause with its reason, a token issued to
    alice, people added and given roles."""
    integrator = service_user("ci-bot", "integrators")
    as_integrator = api(integrator)
    assert as_integrator.post("/api/v1/tickets", OWN_TICKET).status_code == 202

    [result] = agent.post_metrics(agent.sample("dns")).json()["results"]
    rejected = api(bob).post(
        f"/api/v1/tickets/{result['ticket_id']}/approve-remediation",
        {"approve": False, "comment": "secret note: wrong resolver"},
    )
    assert rejected.status_code == 200
    pause_automation(
        Pause(scope="category", category="disk"),
        actor=alice,
        reason="vendor bug under NDA",
        now=timezone.now(),
    )
    return {
        "integrator": as_integrator,
        "others_ticket": result["ticket_id"],
        "own_ticket": OWN_TICKET["ticket_id"],
    }


def read_events(client: Any, **params: Any) -> Any:
    """GET the trail as a token's holder (tests.conftest.Api) or a signed-in browser."""
    if isinstance(client, Client):
        return client.get(EVENTS, params)
    return client.get(EVENTS, **params)


def everything(client: Any) -> list[dict]:
    response = read_events(client, limit=1000)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_an_integrator_reads_only_its_own_doings_and_its_own_tickets(world):
    events = everything(world["integrator"])

    assert {"ticket.opened"} <= {e["action"] for e in events}
    assert all(e["ticket_id"] == world["own_ticket"] or e["actor"] == "user:ci-bot" for e in events)
    actions = {e["action"] for e in events}
    assert not actions & {"token.issued", "user.created", "user.access_changed"}
    assert not any(e["action"].startswith("pause.") for e in events)
    assert "approval.rejected" not in actions
    assert "secret note" not in str(events) and "NDA" not in str(events)


def test_an_integrator_filtering_for_another_ticket_gets_nothing(world):
    response = read_events(world["integrator"], ticket=world["others_ticket"])

    assert response.status_code == 200
    assert response.json()["results"] == []
    assert AuditEvent.objects.filter(ticket_id=world["others_ticket"]).exists()


def test_an_integrator_cannot_read_another_tickets_logs_or_evidence(world):
    others = world["others_ticket"]
    own = world["own_ticket"]

    assert world["integrator"].get(f"/api/v1/tickets/{others}/remediation-logs").status_code == 403
    assert world["integrator"].get(f"/api/v1/tickets/{others}/evidence").status_code == 403
    assert world["integrator"].get(f"/api/v1/tickets/{own}/remediation-logs").status_code == 200


def test_an_integrator_in_the_admin_cannot_read_another_tickets_evidence_page(world):
    person = User.objects.get(username="ci-bot")
    person.is_staff = True
    person.save()

    page = logged_in(person).get(f"/tickets/{world['others_ticket']}/evidence")

    assert page.status_code == 403


def test_compliance_reads_the_whole_trail_with_every_note(world, api, dave):
    events = everything(api(dave))

    assert len(events) == AuditEvent.objects.count()
    assert "secret note: wrong resolver" in str(events) and "vendor bug under NDA" in str(events)


# --- The matrix of /api/v1/audit-events ----------------------------------------------------

ROLES = {
    # role: (how it is made, what it reads: "all", "own" or the refusal's status)
    "supervisor": ("supervisors", "all"),
    "approver": ("approvers", "all"),
    "compliance": ("compliance", "all"),
    "integrator": ("integrators", "own"),
    "alert sender": ("alert senders", 403),
    "staff without permissions": (None, 403),
}


@pytest.mark.parametrize("role", list(ROLES))
def test_the_audit_events_matrix(world, api, role):
    group, reads = ROLES[role]
    name = role.replace(" ", "-")
    if group in ("integrators", "alert senders"):
        client = api(service_user(name, group))  # a service signs in with a token only
    elif group:
        client = api(make_user(name, group))
    else:
        client = logged_in(User.objects.create_user(name, is_staff=True))

    response = read_events(client, limit=1000)

    if reads == "all":
        assert response.status_code == 200
        assert len(response.json()["results"]) == AuditEvent.objects.count()
    elif reads == "own":
        assert response.status_code == 200
        # a new service has done nothing yet and opened no ticket: it reads nothing
        assert all(e["actor"] == f"user:{name}" for e in response.json()["results"])
        assert AuditEvent.objects.exclude(actor=f"user:{name}").exists()
    else:
        assert response.status_code == reads


def test_an_anonymous_visitor_reads_nothing(world):
    assert Client().get(EVENTS).status_code in (401, 403)
