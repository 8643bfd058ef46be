"""A ticket's admin page tells its story: where it stands, the readings, each decision with
its reasons and checks, the approvals and executions, and the audit timeline, all in
labels rather than codes; people change it only through its verbs or the facts form."""

from html.parser import HTMLParser

import pytest
from django.utils import timezone
from django.utils.html import escape

from governance.approvals.actions import approve_request
from governance.decisions.deciding import decide_ticket
from governance.models import ApprovalRequest, AuditEvent, Decision
from remediation.models import Ticket
from tests.governance.admin_pages import logged_in

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


class Page(HTMLParser):
    """What a person sees on a page: its text, and the names of the inputs they could edit."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.inputs: set[str] = set()
        self.chunks: list[str] = []
        self.links: list[str] = []
        self._hidden = 0  # inside <style> or <script>
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("style", "script"):
            self._hidden += 1
        # Named fields a form would post (the sidebar's unnamed search box is not one).
        editable = attrs.get("name") and attrs.get("type") not in ("hidden", "submit")
        if tag in ("input", "textarea", "select") and editable:
            self.inputs.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.chunks.append(" ".join(data.split()))

    @property
    def text(self) -> str:
        return " ".join(self.chunks)


def story_of(user, ticket: Ticket) -> tuple[Page, str]:
    response = logged_in(user).get(f"/admin/remediation/ticket/{ticket.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    return Page(html), html


@pytest.fixture
def approved_firewall_change(agent, bob, carol):
    """A firewall change approved by two people, run by the agent, and a healthy reading since."""
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    with agent.capture(execute=True):
        for person in (bob, carol)[: request.required_approvals]:
            approve_request(request, actor=person, reason=f"{person} checked", now=timezone.now())
    [action] = agent.take_actions()
    agent.report(action, ok=True, output="rule 42 applied")
    agent.post_metrics(agent.sample(cpu_usage=31.5))
    return Ticket.objects.get(ticket_id=result["ticket_id"])


def test_the_timeline_reads_oldest_first_in_labels(approved_firewall_change, alice):
    ticket = approved_firewall_change

    page, html = story_of(alice, ticket)

    # then every audited step of the ticket is there, in order, by its label
    timeline = page.text.split("Timeline", 1)[1]
    events = AuditEvent.objects.filter(ticket_id=ticket.ticket_id).order_by("sequence")
    labels = ["Ticket opened", "Decision made", "Approval requested", "Approved"]
    positions = [timeline.index(label) for label in labels]
    assert positions == sorted(positions)
    assert all(escape(event.summary) in html for event in events)
    # the codes are only a hover hint, never the text people read
    assert "approval.requested" not in page.text
    assert 'title="approval.requested"' in html


def test_the_page_shows_the_readings_and_the_decision_with_its_reasons_and_checks(
    approved_firewall_change, alice
):
    ticket = approved_firewall_change
    decision = ticket.decisions.get()

    page, html = story_of(alice, ticket)

    # the host's newest reading, and the one the decision was made on
    assert "Now" in page.text and "31.5 %" in page.text
    assert "Decided on" in page.text
    # the decision as a person reads it: its outcome by label, the code on hover
    assert 'title="HITL_REQUIRED">Needs a person</span>' in html
    assert all(escape(line) in html for line in decision.reasons[1:])
    assert escape(decision.model_statement()) in html
    assert "Inside the policy's time window" in page.text or "Safety checks not reached" in (
        page.text
    )
    assert f"Reliability {decision.reliability['overall_score']:.1f}" in page.text
    assert str(decision.confidence) not in page.text  # never 0.9832277009958403


def test_the_page_links_to_approval_execution_host_pattern_and_evidence(
    approved_firewall_change, alice
):
    ticket = approved_firewall_change
    request = ticket.approval_requests.get()
    execution = ticket.executions.get()

    page, _ = story_of(alice, ticket)

    expected = {
        f"/admin/governance/approvalrequest/{request.pk}/change/",
        f"/admin/remediation/execution/{execution.pk}/change/",
        f"/admin/remediation/host/{ticket.host_id}/change/",
        f"/admin/governance/decision/{ticket.decisions.get().pk}/change/",
        f"/tickets/{ticket.ticket_id}/evidence",
    }
    if ticket.pattern_id:
        expected.add(f"/admin/feedback/pattern/{ticket.pattern_id}/change/")
    assert expected <= set(page.links)
    assert "rule 42 applied" in page.text
    assert "2 of 2" in page.text or "1 of 1" in page.text


def test_the_story_has_no_inputs_and_no_delete(approved_firewall_change, alice):
    page, html = story_of(alice, approved_firewall_change)

    assert page.inputs == set()
    assert "deletelink" not in html and "/delete/" not in html


def test_an_open_ticket_offers_its_verbs_and_the_facts_form_with_a_reason(agent, alice):
    [result] = agent.post_metrics(agent.sample("dns")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    browser = logged_in(alice)

    # the story offers resolve and close (each asks for a note) and a link to edit the facts
    story = browser.get(f"/admin/remediation/ticket/{ticket.pk}/change/").content.decode()
    assert 'value="resolve_action"' in story and 'value="close_action"' in story
    assert "?edit=1" in story
    confirm = browser.post(
        "/admin/remediation/ticket/", {"action": "resolve_action", "_selected_action": ticket.pk}
    )
    assert b'name="note"' in confirm.content  # the verb asks for a note before it acts

    # the facts form never offers where or what the problem is, and asks why
    form = Page(
        browser.get(f"/admin/remediation/ticket/{ticket.pk}/change/?edit=1").content.decode()
    )
    assert {"title", "change_reason"} <= form.inputs
    assert not {"host", "category", "status", "severity"} & form.inputs

    # when alice renames it with a reason
    data = {
        "title": "Resolver flapping on web-01",
        "description": "",
        "enable_auto_remediation": "on",
        "security_severity": "none",
        "customer_impact_minutes": "0",
        "change_reason": "clearer title",
    }
    response = browser.post(f"/admin/remediation/ticket/{ticket.pk}/change/?edit=1", data)

    # then it is saved through the use case, audited with the reason
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.title == "Resolver flapping on web-01"
    edit = AuditEvent.objects.get(ticket_id=ticket.ticket_id, action="ticket.changed")
    assert edit.data["reason"] == "clearer title"


def test_compliance_reads_the_story_and_is_offered_no_change(approved_firewall_change, dave):
    page, html = story_of(dave, approved_firewall_change)

    assert "Timeline" in page.text and "Ticket opened" in page.text
    assert "resolve_action" not in html and "?edit=1" not in html
    assert page.inputs == set()


def test_the_model_statement_gives_the_probabilities_and_the_rule(agent, alice):
    # given a ticket decided on a class of least expected cost that is less probable than
    # the class it beat
    [result] = agent.post_metrics(agent.sample("cpu")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    sample = ticket.samples.order_by("-taken_at").first()
    decision = decide_ticket(
        ticket,
        severity=2,
        confidence=0.03,
        explanation=[["cpu_usage", 0.02], ["memory_usage", 0.01]],
        probabilities=(0.02, 0.95, 0.03),
        now=timezone.now(),
        sample_id=sample.pk,
    )

    # then the statement lists every probability and names the rule, never a "confidence"
    statement = decision.model_statement()
    assert statement == (
        "The model picks needs a person [HITL_REQUIRED], the class of least expected cost "
        "(probabilities: no action 2%, auto-heal 95%, needs a person 3%), mostly from CPU "
        "usage and memory usage."
    )
    assert decision.reasons[0] == statement
    assert "confidence" not in statement.lower()
    _, html = story_of(alice, ticket)
    assert escape(statement) in html

    # and deciding the same reading again keeps its probabilities
    again = decide_ticket(
        ticket, severity=2, confidence=0.03, explanation=[], now=timezone.now(), sample_id=sample.pk
    )
    assert again.probabilities == [0.02, 0.95, 0.03]


def test_the_audit_list_and_decision_list_show_labels_not_codes(approved_firewall_change, dave):
    browser = logged_in(dave)

    audit = Page(browser.get("/admin/governance/auditevent/").content.decode())
    decisions = Page(browser.get("/admin/governance/decision/").content.decode())

    assert "Approval requested" in audit.text and "Ticket opened" in audit.text
    assert "approval.requested" not in audit.text
    assert "Needs a person" in decisions.text and "HITL_REQUIRED" not in decisions.text
    # the filter offers labels too, on Django's own parameter
    assert "?action__exact=approval.requested" in audit.links


def test_a_decision_is_titled_by_its_label_and_ticket(approved_firewall_change):
    decision = Decision.objects.get(ticket=approved_firewall_change)

    assert str(decision) == f"Needs a person for {approved_firewall_change.ticket_id}"


def test_the_evidence_page_names_events_and_outcomes_by_label(approved_firewall_change, dave):
    ticket = approved_firewall_change

    page = Page(logged_in(dave).get(f"/tickets/{ticket.ticket_id}/evidence").content.decode())

    assert "Approval requested" in page.text and "Needs a person" in page.text
    assert "approval.requested" not in page.text
