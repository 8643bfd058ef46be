"""One ticket's story as evidence: a printable page and one JSON document with the samples,
decisions and their reasons, approvals, what ran, and the audit events with their hashes."""

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest, AuditEvent
from tests.governance.admin_pages import logged_in


@pytest.fixture
def approved_firewall_change(agent, bob, carol):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    with agent.capture(execute=True):  # the queued execution is dispatched after commit
        for person in (bob, carol)[: request.required_approvals]:
            approve_request(request, actor=person, reason=f"{person} checked", now=timezone.now())
    [action] = agent.take_actions()
    agent.report(action, ok=True, output="rule 42 applied")
    return request.ticket


def test_the_evidence_document_tells_the_whole_story(approved_firewall_change, dave):
    ticket = approved_firewall_change
    response = logged_in(dave).get(f"/api/v1/tickets/{ticket.ticket_id}/evidence")
    assert response.status_code == 200
    story = response.json()
    assert story["ticket"]["host"] == "web-01"
    assert story["opening_samples"][0]["firewall_change_requested"] is True
    [decision] = story["decisions"]
    assert decision["outcome"] == "HITL_REQUIRED" and decision["reasons"]
    assert decision["runbook_version"] and decision["commands"]
    [approval] = story["approvals"]
    assert approval["status"] == "approved"
    assert {v["by"] for v in approval["verdicts"]} <= {"bob", "carol"}
    assert story["executions"][0]["output"] == "rule 42 applied"
    sequences = [e["sequence"] for e in story["audit_events"]]
    expected = AuditEvent.objects.filter(ticket_id=ticket.ticket_id).order_by("sequence")
    assert sequences == list(expected.values_list("sequence", flat=True))
    assert story["audit_events"][0]["hash"] == expected.first().hash


def test_the_evidence_page_is_printable_and_for_those_who_read_the_audit(
    approved_firewall_change, dave
):
    ticket = approved_firewall_change
    page = logged_in(dave).get(f"/tickets/{ticket.ticket_id}/evidence")
    assert page.status_code == 200
    html = page.content.decode()
    assert "@media print" in html
    assert "rule 42 applied" in html and "bob" in html
    assert AuditEvent.objects.filter(ticket_id=ticket.ticket_id).first().hash in html

    nobody = logged_in(User.objects.create_user("eve", is_staff=True))
    assert nobody.get(f"/tickets/{ticket.ticket_id}/evidence").status_code == 403
    assert nobody.get(f"/api/v1/tickets/{ticket.ticket_id}/evidence").status_code == 403
