"""Separation of duties: whoever opened a ticket, or wrote what it would run, never approves
it, whichever way they come (a token, a session, the admin, a notice link); one person
counts once toward a quorum however many roles, tokens or accounts they hold; a service's
user never approves.

Personas: alice supervises (she may approve), bob and carol approve, dave is compliance.
"""

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from governance.models import ApprovalRequest, AuditEvent
from governance.notices.links import sign_link
from remediation.actions import close_ticket
from remediation.models import Execution, Ticket
from tests.conftest import Api, make_user, token_for
from tests.governance.admin_pages import form_data, logged_in

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

CHANGELIST = "/admin/governance/approvalrequest/"


@pytest.fixture
def disk_still_full(agent, alice):
    """web-01's newest reading shows a full disk and no ticket is open for it (the one its
    agent opened was resolved by hand), so a ticket opened for it is confirmed."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    close_ticket(ticket, actor=alice, resolved=True, reason="cleaned by hand", now=timezone.now())
    return agent


def open_ops_1(api: Api) -> Any:
    """The finding's OPS-1: a confirmed disk problem, opened without the opt-in, so its
    remediation waits for a person."""
    response = api.post(
        "/api/v1/tickets",
        {
            "ticket_id": "OPS-1",
            "host": "web-01",
            "category": "disk",
            "description": "/var is full on web-01",
        },
    )
    assert response.status_code == 202, response.content  # decided by its task, at once here
    return response


def pending_of(ticket_id: str) -> ApprovalRequest:
    return ApprovalRequest.objects.get(ticket__ticket_id=ticket_id, status="pending")


def approve_over_api(api: Api, ticket_id: str) -> Any:
    return api.post(
        f"/api/v1/tickets/{ticket_id}/approve-remediation", {"approve": True, "comment": "ok"}
    )


def approve_by_session(user: User, request: ApprovalRequest) -> Any:
    return logged_in(user).post(
        f"/api/v1/approvals/{request.pk}/approve", {}, content_type="application/json"
    )


def in_roles(username: str, *roles: str) -> User:
    user = make_user(username, roles[0])
    user.groups.add(*Group.objects.filter(name__in=roles[1:]))
    return user


# --- Whoever opens a ticket through the API can approve its remediation --------------------


def test_a_supervisor_who_opened_a_ticket_with_a_token_cannot_approve_it_with_it(
    api, alice, bob, disk_still_full
):
    supervisor = api(alice)
    open_ops_1(supervisor)

    refused = approve_over_api(supervisor, "OPS-1")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "own_request"
    request = pending_of("OPS-1")
    assert not request.approvals.exists()
    # another approver may
    assert approve_over_api(api(bob), "OPS-1").json()["status"] == "approved"


def test_the_opener_cannot_approve_by_session_either(api, alice, disk_still_full):
    open_ops_1(api(alice))
    request = pending_of("OPS-1")

    refused = approve_by_session(alice, request)

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "own_request"
    assert not request.approvals.exists()


def test_the_opener_cannot_approve_in_the_admin(api, alice, disk_still_full):
    open_ops_1(api(alice))
    request = pending_of("OPS-1")

    logged_in(alice).post(
        CHANGELIST,
        {
            "action": "approve_action",
            "_selected_action": [request.pk],
            "note": "mine",
            "confirmed": "yes",
        },
        follow=True,
    )

    assert not request.approvals.exists()
    request.refresh_from_db()
    assert request.status == "pending"


def test_the_opener_cannot_approve_with_a_notice_link(api, alice, disk_still_full):
    open_ops_1(api(alice))
    request = pending_of("OPS-1")
    path = f"/notices/{sign_link(request.pk, 'approve', alice.pk)}"
    browser = logged_in(alice)

    assert browser.get(path).status_code == 403
    assert browser.post(path, {"note": "mine"}).status_code == 403
    assert not request.approvals.exists()


def test_the_opener_is_told_of_no_approval_to_give(
    api, alice, bob, disk_still_full, mailoutbox, settings
):
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 0  # each notice goes out as it commits
    settings.WARDEN_NOTICE_BASE_URL = "http://testserver"
    settings.WARDEN_NOTICE_EMAILS = []
    open_ops_1(api(alice))

    told = {address for message in mailoutbox for address in message.to}

    assert bob.email in told
    assert alice.email not in told


def test_a_person_in_integrators_and_approvers_cannot_approve_what_they_opened(
    api, bob, disk_still_full
):
    both = in_roles("erin", "integrators", "approvers")
    as_erin = api(both)
    open_ops_1(as_erin)

    refused = approve_over_api(as_erin, "OPS-1")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] in ("own_request", "service_account")
    assert not pending_of("OPS-1").approvals.exists()
    assert not Execution.objects.filter(ticket__ticket_id="OPS-1").exists()


# --- Who opened a ticket is recorded and shown ---------------------------------------------


def test_the_ticket_says_who_opened_it_and_its_request_carries_it(
    api, alice, dave, disk_still_full
):
    opened = open_ops_1(api(alice))

    assert opened.json()["opened_by"] == "alice"
    assert api(dave).get("/api/v1/tickets/OPS-1").json()["opened_by"] == "alice"
    audited = AuditEvent.objects.get(action="ticket.opened", ticket_id="OPS-1")
    assert audited.data["opened_by"] == "alice"
    assert pending_of("OPS-1").requested_by == alice
    requested = AuditEvent.objects.get(action="approval.requested", ticket_id="OPS-1")
    assert requested.data["requested_by"] == "alice"


def test_a_ticket_from_an_agents_metrics_was_opened_by_nobody(api, dave, agent):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    read = api(dave).get(f"/api/v1/tickets/{result['ticket_id']}").json()

    assert read["opened_by"] is None


def test_the_admin_shows_who_opened_a_ticket(api, alice, disk_still_full):
    open_ops_1(api(alice))
    superuser = User.objects.create_superuser("root", "root@example.com", "pw")

    page = logged_in(superuser).get("/admin/remediation/ticket/")

    # the Opened column: when, and by whom when a person opened it
    assert b" UTC by alice</td>" in page.content


# --- The runbook's author never approves running it ------------------------------------------


def test_whoever_saved_the_runbook_version_never_approves_running_it(agent, bob, carol):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    shown = pending_of(result["ticket_id"])
    superuser = User.objects.create_superuser("root", "root@example.com", "pw")
    browser = logged_in(superuser)
    path = f"/admin/remediation/runbook/{shown.runbook_id}/change/"
    page = browser.get(path)
    data = form_data(
        page, description=f"{shown.runbook.description} (reviewed)", change_reason="reviewed"
    )
    assert browser.post(path, data).status_code == 302
    # the edit voided what people were shown and asked again, for the version root saved
    request = pending_of(result["ticket_id"])
    assert request.pk != shown.pk

    refused = approve_by_session(superuser, request)

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "own_change"
    for person in (bob, carol):
        assert approve_by_session(person, request).status_code == 200
    request.refresh_from_db()
    assert request.status == "approved"


# --- One person counts once ----------------------------------------------------------------


@pytest.fixture
def firewall(agent) -> ApprovalRequest:
    """A firewall change: critical, so it waits for two approvers."""
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    return pending_of(result["ticket_id"])


def still_waiting(request: ApprovalRequest) -> None:
    request.refresh_from_db()
    assert request.status == "pending"
    assert request.approvals.count() == 1
    assert not Execution.objects.filter(approval_request=request).exists()


def test_a_person_approving_by_session_and_again_by_token_counts_once(api, bob, firewall):
    assert approve_by_session(bob, firewall).status_code == 200

    again = approve_over_api(api(bob), firewall.ticket.ticket_id)

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_decided"
    still_waiting(firewall)


def test_a_person_approving_through_two_tokens_counts_once(bob, firewall):
    first, second = Api(token_for(bob)), Api(token_for(bob))
    assert approve_over_api(first, firewall.ticket.ticket_id).status_code == 200

    again = approve_over_api(second, firewall.ticket.ticket_id)

    assert again.status_code == 409
    still_waiting(firewall)


def test_a_person_in_two_approving_roles_counts_once(api, firewall):
    both = in_roles("frank", "approvers", "supervisors")
    assert approve_over_api(api(both), firewall.ticket.ticket_id).status_code == 200

    again = approve_by_session(both, firewall)

    assert again.status_code == 409
    still_waiting(firewall)


def test_two_accounts_of_one_person_count_once(api, bob, firewall):
    second_account = make_user("bob2", "approvers")
    second_account.email = bob.email.upper()
    second_account.save()
    assert approve_over_api(api(bob), firewall.ticket.ticket_id).status_code == 200

    again = approve_over_api(api(second_account), firewall.ticket.ticket_id)

    assert again.status_code == 409
    assert "as bob" in again.json()["error"]["message"]
    still_waiting(firewall)


@pytest.mark.parametrize("service_role", ["integrators", "alert senders"])
def test_a_service_account_never_approves_nor_counts(api, bob, firewall, service_role):
    service = User.objects.create_user("bridge")
    service.set_unusable_password()
    service.save()
    service.groups.add(*Group.objects.filter(name__in=[service_role, "approvers"]))

    refused = approve_over_api(api(service), firewall.ticket.ticket_id)

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "service_account"
    assert not firewall.approvals.exists()


def test_an_approval_given_before_joining_a_service_role_no_longer_counts(
    api, bob, carol, firewall
):
    assert approve_over_api(api(bob), firewall.ticket.ticket_id).status_code == 200
    bob.groups.add(Group.objects.get(name="integrators"))

    second = approve_over_api(api(carol), firewall.ticket.ticket_id)

    assert second.status_code == 200
    assert (second.json()["status"], second.json()["approvals"]) == ("pending", 1)
    assert not Execution.objects.filter(approval_request=firewall).exists()
