"""One ticket's story as evidence: a printable page and one JSON document with the samples,
decisions and their reasons, approvals, what ran, and the audit events with their hashes."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest, AuditEvent
from remediation.actions import add_host
from tests.governance.admin_pages import logged_in

# Alerts from a few days back, not a fixed date: intake refuses alerts older than a year.
DAY = (datetime.now(UTC) - timedelta(days=4)).date().isoformat()
STARTED = f"{DAY}T01:00:00Z"


# What a browser would run or open as a document on a click: never an href on a page.
LIVE_ADDRESSES = [
    "javascript:alert(document.cookie)",
    " JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//elsewhere.example/phish",
]


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
    # the print layout is in the page's stylesheet (the CSP refuses inline styles)
    stylesheet = re.search(r'href="(/static/warden/evidence\.css)"', html).group(1)
    assert "@media print" in b"".join(logged_in(dave).get(stylesheet).streaming_content).decode()
    assert "rule 42 applied" in html and "bob" in html
    assert AuditEvent.objects.filter(ticket_id=ticket.ticket_id).first().hash in html

    nobody = logged_in(User.objects.create_user("eve", is_staff=True))
    assert nobody.get(f"/tickets/{ticket.ticket_id}/evidence").status_code == 403
    assert nobody.get(f"/api/v1/tickets/{ticket.ticket_id}/evidence").status_code == 403


@pytest.fixture
def alert_sender(db, api):
    """Alertmanager's token, as an alert sender, and the host its alerts name."""
    add_host("web-01", now=timezone.now())
    service = User.objects.create_user("alertmanager")
    service.groups.add(Group.objects.get(name="alert senders"))
    return api(service)


def alertmanager_alert(fingerprint: str, generator_url: str) -> dict:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "warden",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HostOutOfDiskSpace", "instance": "web-01:9100"},
                "annotations": {"summary": "Host out of disk space"},
                "startsAt": STARTED,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": generator_url,
                "fingerprint": fingerprint,
            }
        ],
    }


def evidence_html(viewer: User, ticket_id: str) -> str:
    page = logged_in(viewer).get(f"/tickets/{ticket_id}/evidence")
    assert page.status_code == 200
    return page.content.decode()


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


@pytest.mark.parametrize("address", LIVE_ADDRESSES)
def test_an_alerts_generator_url_that_is_not_http_is_shown_as_text_never_a_live_link(
    alert_sender, dave, address
):
    # the finding: Alertmanager's generatorURL "javascript:..." became a live <a href>
    answer = alert_sender.post(
        "/api/v1/alerts/alertmanager", alertmanager_alert("f00dfeed01", address)
    )
    assert answer.status_code == 200, answer.content
    [alert] = answer.json()["alerts"]

    html = evidence_html(dave, alert["ticket_id"])

    assert "HostOutOfDiskSpace" in html
    assert not [href for href in hrefs(html) if "script" in href.lower() or "data:" in href]
    assert not [href for href in hrefs(html) if "elsewhere" in href]
    # what arrived is kept, as text a compliance officer can read
    assert 'class="unlinked"' in html


def test_the_generic_webhooks_javascript_link_is_shown_as_text_never_a_live_link(
    alert_sender, dave
):
    body = {
        "id": "check-7",
        "host": "web-01",
        "category": "disk",
        "status": "critical",
        "name": "DiskFull",
        "title": "disk /var",
        "url": "javascript:fetch('/admin/logout/',{method:'POST'})",
    }
    answer = alert_sender.post("/api/v1/alerts/webhook", body)
    assert answer.status_code == 200, answer.content
    [alert] = answer.json()["alerts"]

    html = evidence_html(dave, alert["ticket_id"])

    assert "DiskFull" in html
    assert not [href for href in hrefs(html) if "javascript" in href.lower()]
    assert "javascript:fetch(&#x27;/admin/logout/&#x27;" in html  # shown, escaped, inert


def test_an_alerts_http_generator_url_stays_a_link(alert_sender, dave):
    address = "https://prometheus.example:9090/graph?g0.expr=node_filesystem_avail_bytes&g0.tab=1"
    answer = alert_sender.post(
        "/api/v1/alerts/alertmanager", alertmanager_alert("f00dfeed02", address)
    )
    [alert] = answer.json()["alerts"]

    html = evidence_html(dave, alert["ticket_id"])

    assert address.replace("&", "&amp;") in hrefs(html)


def test_the_evidence_page_runs_no_inline_script_under_a_content_security_policy(
    approved_firewall_change, dave
):
    # the finding: no page sent a Content-Security-Policy
    page = logged_in(dave).get(f"/tickets/{approved_firewall_change.ticket_id}/evidence")

    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    html = page.content.decode()
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html)  # every script is a file
    assert not re.search(r"\son[a-z]+\s*=", html)  # no onclick= and the like
    assert not re.search(r"<style|\sstyle=", html)
