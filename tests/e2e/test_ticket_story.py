"""A supervisor reads a healed ticket's story in Chromium, then prints its evidence."""

import pytest
from django.utils import timezone

from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest
from remediation.models import Ticket
from tests.e2e.test_compliance import signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]


def test_the_story_of_an_approved_and_verified_fix_reads_in_order_with_links(
    browser, live_asgi, agent, alice, bob, carol
):
    # given a firewall change two people approved, the agent ran, and fresh readings verified
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    with agent.capture(execute=True):
        for person in (bob, carol):
            approve_request(request, actor=person, reason=f"{person} checked", now=timezone.now())
    [action] = agent.take_actions()
    agent.report(action, ok=True, output="rule 42 applied")
    agent.post_metrics(agent.sample())
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])

    # when the supervisor opens it
    page = signed_in(browser, live_asgi, alice)
    page.goto(f"{live_asgi}/admin/remediation/ticket/{ticket.pk}/change/")

    # then it reads as a story, not a form: where it stands, why, who agreed, what ran
    facts = page.locator("#ticket-facts").inner_text()
    assert "Resolved" in facts and "web-01" in facts
    assert page.locator("#content-main input[name], #content-main textarea").count() == 0
    decisions = page.locator("#decisions").inner_text()
    assert "least expected cost" in decisions and "probabilities" in decisions
    assert "Needs a person" in decisions  # a label, not a code
    approvals = page.locator("#approvals").inner_text()
    assert "2 of 2" in approvals and "bob approved" in approvals and "carol checked" in approvals
    assert "rule 42 applied" in page.locator("#executions").inner_text()

    # and its timeline is oldest first, in words people use
    steps = page.locator("#timeline tbody tr td:nth-child(3)").all_inner_texts()
    assert steps[0] == "Ticket opened" and steps[-1] == "Ticket resolved"
    assert (
        steps.index("Approval requested")
        < steps.index("Approved")
        < steps.index("Sent to the agent")
    )

    # and it links to what it names
    page.locator("#approvals a").first.click()
    page.wait_for_load_state()
    assert f"/admin/governance/approvalrequest/{request.pk}/" in page.url
    page.go_back()
    page.get_by_role("link", name="Evidence (printable)").click()
    page.wait_for_load_state()
    assert f"/tickets/{ticket.ticket_id}/evidence" in page.url
    assert "rule 42 applied" in page.locator("body").inner_text()
    page.context.close()
