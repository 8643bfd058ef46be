"""The admin's home page is a supervisor's dashboard of what needs attention now."""

import pytest
from django.utils import timezone

from governance.approvals.actions import reject_request
from governance.models import ApprovalRequest, Pause
from governance.pauses.actions import pause_automation
from tests.e2e.test_compliance import signed_in
from tests.governance.test_reviews import heal, overdue, review_of

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]


def test_the_dashboard_counts_what_waits_and_links_to_it(browser, live_asgi, agent, alice):
    # given a firewall change waiting for people and a paused category
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    pause_automation(
        Pause(scope="category", category="disk"),
        actor=alice,
        reason="storage migration",
        now=timezone.now(),
    )

    # when the supervisor opens the admin
    page = signed_in(browser, live_asgi, alice)
    page.goto(f"{live_asgi}/admin/")
    attention = page.locator("#attention")

    # then it says what needs attention now, with the model's state and the console's link
    text = attention.inner_text()
    assert "Approvals waiting\t1" in text
    assert "storage migration" in text
    assert "Model drift" in text
    assert page.title().endswith("Warden")

    # and each line leads to the rows behind it
    attention.get_by_role("link", name="Approvals waiting").click()
    page.wait_for_load_state()
    assert "status__exact=pending" in page.url
    assert result["ticket_id"] in page.locator("#result_list").inner_text()

    page.goto(f"{live_asgi}/admin/")
    page.locator("#attention").get_by_role("link", name="open the live console").click()
    page.get_by_test_id("status").filter(has_text="live").wait_for(timeout=10_000)
    assert "storage migration" in page.get_by_test_id("banner").inner_text()
    page.context.close()


def test_a_supervisor_approves_from_the_request_page_with_a_note(browser, live_asgi, agent, alice):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    page = signed_in(browser, live_asgi, alice)
    page.goto(f"{live_asgi}/admin/governance/approvalrequest/{request.pk}/change/")

    # the button sits outside the admin's own form, so it asks for a note first
    page.get_by_role("button", name="Approve…").click()
    page.wait_for_load_state()
    assert "You are about to" in page.locator("#content").inner_text()
    assert not request.approvals.exists()
    page.fill("#id_note", "rule reviewed with netops")
    page.get_by_role("button", name="Yes, approve").click()
    page.wait_for_load_state()

    approval = request.approvals.get()
    assert (approval.approver, approval.comment) == (alice, "rule reviewed with netops")
    page.context.close()


def test_the_dashboard_leads_to_overdue_reviews_and_escalated_tickets_and_a_flag_needs_a_reason(
    browser, live_asgi, agent, other_agent, alice, bob
):
    # given a disk Warden cleaned by itself, its review two hours overdue, and a
    # firewall change a person rejected (its ticket escalated to people)
    review = overdue(review_of(heal(agent)))
    [result] = other_agent.post_metrics(other_agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    reject_request(request, actor=bob, reason="not during the sale", now=timezone.now())

    # when the supervisor opens the admin, both are counted, each with its link
    page = signed_in(browser, live_asgi, alice)
    page.goto(f"{live_asgi}/admin/")
    text = page.locator("#attention").inner_text()
    assert "Escalated to people\t1" in text
    assert f"{result['ticket_id']} on web-02: Firewall change requested" in text
    assert "Reviews overdue\t1 of what Warden did by itself" in text
    ticket_id = review.execution.ticket.ticket_id
    line = f"{ticket_id}: clean-temp-and-rotate-logs on web-01 (L3, succeeded), due 2 hours ago"
    assert line in text.replace("\xa0", " ")  # timesince's non-breaking space

    page.locator("#attention").get_by_role("link", name="Escalated to people").click()
    page.wait_for_load_state()
    assert result["ticket_id"] in page.locator("#result_list").inner_text()

    # and the overdue review leads to what Warden did, where a flag asks why first
    page.goto(f"{live_asgi}/admin/")
    page.locator("#attention").get_by_role("link", name="Reviews overdue").click()
    page.wait_for_load_state()
    assert "overdue=yes" in page.url
    page.locator("#result_list").get_by_role("link", name="Overdue").click()
    page.wait_for_load_state()
    assert f"/postactionreview/{review.pk}/change/" in page.url
    content = page.locator("#content").inner_text()
    assert "Overdue: this review was due" in content
    assert "Why Warden acted by itself" in content
    page.get_by_role("button", name="Flag…").click()
    page.wait_for_load_state()
    page.fill("#id_note", "it rotated the audit logs away")
    page.get_by_role("button", name="Yes, flag").click()
    page.wait_for_load_state()
    assert "negative feedback recorded" in page.locator(".messagelist").inner_text()
    review.refresh_from_db()
    assert (review.status, review.reviewed_by) == ("flagged", alice)

    # and it leaves the dashboard
    page.goto(f"{live_asgi}/admin/")
    assert "Reviews overdue\t0" in page.locator("#attention").inner_text()
    page.context.close()
