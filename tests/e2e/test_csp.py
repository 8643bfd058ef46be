"""Every page carries a Content-Security-Policy that refuses inline script, and Warden's own
pages still work under it in Chromium: the console connects, shows events live and approves;
the evidence page, a ticket's story and the admin report no violation."""

import pytest
from django.utils import timezone

from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest
from remediation.models import Ticket
from tests.conftest import token_for
from tests.e2e.test_compliance import signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]

# Installed before any page script runs: each violation the browser reports, as text.
WATCH_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} refused ${event.blockedURI || "inline"}`
                            + ` at ${event.sourceFile}:${event.lineNumber}`);
});
"""


def watched_page(browser, live_asgi, user):
    """A signed-in page that records every CSP violation: the DOM's event and the console's
    'Refused to ...' line (either would do; both, so none goes unseen)."""
    page = signed_in(browser, live_asgi, user)
    page.add_init_script(WATCH_VIOLATIONS)
    page.refused = []
    page.on(
        "console",
        lambda message: (
            page.refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return page


def violations(page) -> list[str]:
    page.wait_for_timeout(300)  # the browser reports violations after the fact
    return page.evaluate("window.cspViolations") + page.refused


def firewall_request(agent) -> ApprovalRequest:
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    return ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])


def test_the_console_connects_shows_events_and_approves_under_the_policy(
    browser, live_asgi, agent, other_agent, alice
):
    # given a firewall change waiting for two approvals
    request = firewall_request(agent)

    # when a supervisor opens the console
    page = watched_page(browser, live_asgi, alice)
    response = page.goto(f"{live_asgi}/console/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy

    # then its socket connects (connect-src 'self' admits ws: on the same host)
    page.get_by_test_id("status").filter(has_text="live").wait_for(timeout=10_000)
    row = page.locator(f"tr[data-approval='{request.pk}']")
    row.wait_for(timeout=10_000)
    page.wait_for_load_state("networkidle")  # the panels fetched on connecting have arrived

    # and a new event arrives live
    other_agent.post_metrics(other_agent.sample("cpu"))
    page.locator("#events li[data-action='execution.dispatched']").wait_for(timeout=10_000)

    # and approving through the dialog works: the script is a file, the call is same-origin
    page.locator(f"button[data-verdict='approve'][data-id='{request.pk}']").click()
    page.locator("#verdict-dialog").wait_for(state="visible")
    page.fill("#verdict-note", "checked under the policy")
    page.click("#verdict-submit")
    page.locator("#verdict-dialog").wait_for(state="hidden")
    row.get_by_test_id("approval-count").filter(has_text="1 of 2").wait_for(timeout=10_000)
    assert request.approvals.get().approver == alice

    # with no violation on the way
    assert violations(page) == []

    # while a script injected as text (what a stored XSS would be) is refused, and reported
    page.evaluate(
        """() => { const script = document.createElement("script");
                   script.textContent = "window.injected = true";
                   document.body.append(script); }"""
    )
    assert page.evaluate("window.injected") is None
    assert any("script-src" in line for line in violations(page))


def test_the_evidence_story_and_admin_pages_report_no_violation(
    browser, live_asgi, agent, alice, bob, carol
):
    # given a firewall change two people approved, that ran and was verified
    request = firewall_request(agent)
    with agent.capture(execute=True):
        for person in (bob, carol):
            approve_request(request, actor=person, reason=f"{person} checked", now=timezone.now())
    [action] = agent.take_actions()
    agent.report(action, ok=True, output="rule 42 applied")
    agent.post_metrics(agent.sample())
    ticket = Ticket.objects.get(pk=request.ticket_id)

    page = watched_page(browser, live_asgi, alice)
    pages = {
        "admin index": "/admin/",
        "ticket story": f"/admin/remediation/ticket/{ticket.pk}/change/",
        "evidence": f"/tickets/{ticket.ticket_id}/evidence",
        "approval request": f"/admin/governance/approvalrequest/{request.pk}/change/",
        "tickets list": "/admin/remediation/ticket/?status__exact=resolved",
        "policy form": "/admin/governance/policy/",
        "API docs": "/api/docs",
    }
    seen = {}
    for name, path in pages.items():
        response = page.goto(f"{live_asgi}{path}")
        assert response.status == 200, name
        assert "default-src 'self'" in response.headers["content-security-policy"], name
        page.wait_for_load_state("networkidle")
        seen[name] = violations(page)
        page.refused.clear()
    assert seen == {name: [] for name in pages}

    # and the API's docs still draw under it (their script is a file of their own)
    page.goto(f"{live_asgi}/api/docs")
    page.locator(".swagger-ui .title").filter(has_text="Warden API").wait_for(timeout=10_000)

    # and the evidence page's Print control is a button wired by a file, not an onclick
    page.goto(f"{live_asgi}/tickets/{ticket.ticket_id}/evidence")
    assert page.locator("[data-print]").count() == 1
    assert page.locator("[onclick]").count() == 0


def test_api_and_admin_answers_carry_the_policy(browser, live_asgi, alice):
    http = browser.new_context().request
    key = token_for(alice)

    answers = {
        "API": http.get(f"{live_asgi}/api/v1/tickets", headers={"Authorization": f"Token {key}"}),
        "API refusal": http.get(f"{live_asgi}/api/v1/tickets"),
        "admin login": http.get(f"{live_asgi}/admin/login/"),
        "API docs": http.get(f"{live_asgi}/api/docs"),
    }

    for name, answer in answers.items():
        policy = answer.headers.get("content-security-policy", "")
        assert "default-src 'self'" in policy, name
        assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy, name
        assert "base-uri 'none'" in policy and "form-action 'self'" in policy, name
    assert answers["API"].status == 200 and answers["API refusal"].status == 401
