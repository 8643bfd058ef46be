"""A supervisor watches the live console in Chromium and approves a risky change there."""

import pytest

from governance.models import ApprovalRequest

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def open_console(browser, client, live_asgi, user):
    client.force_login(user)
    context = browser.new_context()
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_asgi}]
    )
    page = context.new_page()
    page.goto(f"{live_asgi}/console/")
    page.get_by_test_id("status").filter(has_text="live").wait_for(timeout=10_000)
    return page


def test_events_arrive_live_and_an_approval_is_given_in_the_console(
    browser, client, live_asgi, agent, other_agent, alice, bob
):
    # given a firewall change waiting for two approvers, and a supervisor's console
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    page = open_console(browser, client, live_asgi, alice)
    assert result["ticket_id"] in page.locator("#approvals").inner_text()
    # with the model's reading of it: firewall_change_requested drove it to HITL_REQUIRED
    why = page.get_by_test_id("explanation").inner_text()
    assert "HITL_REQUIRED" in why
    assert "firewall_change_requested" in why

    # when a new problem arrives from another host while the console is open (this
    # host's newest readings must still show its firewall request, or it is voided)
    other_agent.post_metrics(other_agent.sample("cpu"))

    # then its events appear without a reload
    page.locator("#events li[data-action='execution.dispatched']").wait_for(timeout=10_000)

    # when the supervisor approves in the console
    page.once("dialog", lambda dialog: dialog.accept("checked the rule with netops"))
    page.locator(f"button[data-verdict='approve'][data-id='{request.pk}']").click()

    # then the approval is recorded (one of two) and shows up live
    page.locator("#events li[data-action='approval.approved']").wait_for(timeout=10_000)
    request.refresh_from_db()
    approval = request.approvals.get()
    assert (approval.approver, approval.comment) == (alice, "checked the rule with netops")
    assert request.status == "pending"
    page.context.close()


def test_the_console_is_for_staff_only(browser, client, live_asgi):
    page = browser.new_page()
    page.goto(f"{live_asgi}/console/")
    assert "/admin/login/" in page.url
    page.close()
