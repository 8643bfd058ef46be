"""Approvers approve in the Django admin: a confirmation page with a note, then the execution."""

import pytest
from django.utils.html import escape

from governance.models import ApprovalRequest, AuditEvent
from remediation.models import Ticket

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

CHANGELIST = "/admin/governance/approvalrequest/"


def admin_verdict(client, user, request_id, verb, note="", confirmed=True):
    client.force_login(user)
    data = {"action": f"{verb}_action", "_selected_action": [request_id], "note": note}
    if confirmed:
        data["confirmed"] = "yes"
    return client.post(CHANGELIST, data, follow=True)


def waiting_dns_request(agent):
    [result] = agent.post_metrics(agent.sample("dns")).json()["results"]
    return ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])


def test_the_admin_asks_for_a_note_before_approving(agent, client, bob):
    request = waiting_dns_request(agent)

    page = admin_verdict(client, bob, request.pk, "approve", confirmed=False)

    assert page.status_code == 200
    assert b'name="note"' in page.content
    assert not request.approvals.exists()


def test_the_approve_page_shows_what_will_run_as_the_console_does(agent, client, bob):
    # given a DNS change waiting for people
    request = waiting_dns_request(agent)
    decision = request.decision

    # when bob chooses Approve... in the admin
    page = admin_verdict(client, bob, request.pk, "approve", confirmed=False)

    # then before his note he sees what will run, the readings, the risk and the reasons
    html = page.content.decode()
    assert f"{request.ticket.ticket_id} on {request.ticket.host.name}" in html
    assert "Current readings" in html and "DNS latency" in html
    assert decision.commands and all(escape(command) in html for command in decision.commands)
    assert "High risk" in html
    assert escape(decision.model_statement()) in html
    assert escape(decision.reasons[-1]) in html
    assert "HITL_REQUIRED]" in html and "(HITL_REQUIRED" not in html


def test_two_admin_approvals_queue_the_execution(agent, client, bob, carol):
    # given a DNS change that needs two approvers
    request = waiting_dns_request(agent)

    # when bob approves in the admin, nothing runs yet
    page = admin_verdict(client, bob, request.pk, "approve", note="resolver flapping")
    assert b"1 of 2" in page.content or b"2 needed" in page.content
    assert agent.take_actions() == []

    # and when carol approves too, the agent is handed the action
    with agent.capture(execute=True):
        page = admin_verdict(client, carol, request.pk, "approve", note="agreed")
    assert b"execution queued" in page.content
    [action] = agent.take_actions()
    assert action["action"] == "switch_dns_resolver"
    notes = AuditEvent.objects.filter(action="approval.approved").values_list("data", flat=True)
    assert {"resolver flapping", "agreed"} <= {data.get("comment") for data in notes}


def test_compliance_cannot_approve_in_the_admin(agent, client, dave):
    request = waiting_dns_request(agent)

    page = admin_verdict(client, dave, request.pk, "approve", note="looks fine")

    assert not request.approvals.exists()
    assert page.status_code in (200, 403)
    assert agent.take_actions() == []


def test_the_ticket_page_shows_what_drove_the_model(agent, client, alice):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    client.force_login(alice)

    page = client.get(f"/admin/remediation/ticket/{ticket.pk}/change/")

    assert page.status_code == 200
    assert b"What drove the model" in page.content
    assert b"disk usage [disk_usage], strongly towards" in page.content


def test_the_approval_page_shows_why_and_what_drove_the_model(agent, client, bob):
    request = waiting_dns_request(agent)
    client.force_login(bob)

    page = client.get(f"{CHANGELIST}{request.pk}/change/")

    assert page.status_code == 200
    assert b"Why a person is needed" in page.content
    assert b"DNS latency [dns_latency_ms], strongly towards needs a person" in page.content


def test_the_approve_action_is_not_offered_to_compliance(agent, client, dave):
    waiting_dns_request(agent)
    client.force_login(dave)

    page = client.get(CHANGELIST)

    assert page.status_code == 200
    assert b"approve_action" not in page.content


def test_the_list_shows_host_progress_why_and_time_left(agent, client, bob):
    request = waiting_dns_request(agent)
    client.force_login(bob)
    page = client.get(CHANGELIST).content.decode()
    assert "web-01" in page
    assert f"0 of {request.required_approvals}" in page
    assert request.decision.reasons[-1][:40] in page
    assert " h " in page and " min" in page  # time left


def test_the_request_page_has_approve_and_reject_buttons_for_approvers_only(
    agent, client, bob, dave
):
    request = waiting_dns_request(agent)
    client.force_login(bob)
    page = client.get(f"{CHANGELIST}{request.pk}/change/").content.decode()
    assert 'value="approve_action"' in page and 'value="reject_action"' in page
    client.force_login(dave)
    page = client.get(f"{CHANGELIST}{request.pk}/change/").content.decode()
    assert 'value="approve_action"' not in page
