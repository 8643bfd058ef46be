"""Supervisors work in the live console in Chromium: approvals appear, count and go, live."""

import json

import pytest
from django.test import Client

from governance.models import ApprovalRequest

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]


def open_console(browser, live_asgi, user, before_load=None):
    client = Client()  # one per person: logging another in would end this one's session
    client.force_login(user)
    context = browser.new_context()
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_asgi}]
    )
    page = context.new_page()
    if before_load:
        before_load(page)
    page.goto(f"{live_asgi}/console/")
    page.get_by_test_id("status").filter(has_text="live").wait_for(timeout=10_000)
    # The console's first fetches read the tables the test writes next: on SQLite's shared
    # in-memory test database a write beside an unfinished read fails as "table is locked".
    page.wait_for_load_state("networkidle")
    return page


def give_verdict(page, request, verdict, note):
    page.locator(f"button[data-verdict='{verdict}'][data-id='{request.pk}']").click()
    dialog = page.locator("#verdict-dialog")
    dialog.wait_for(state="visible")
    page.fill("#verdict-note", note)
    page.click("#verdict-submit")
    return dialog


def test_two_supervisors_see_an_approval_appear_count_and_go_without_reloading(
    browser, client, live_asgi, agent, other_agent, alice, bob
):
    # given two people with the console open, and nothing waiting
    first = open_console(browser, live_asgi, alice)
    second = open_console(browser, live_asgi, bob)
    assert "Nothing waits for approval" in second.locator("#approvals").inner_text()

    # when a host asks for a firewall change (two approvers needed)
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])

    # then it appears in both consoles, with why a person is needed, and the banner counts it
    for page in (first, second):
        row = page.locator(f"tr[data-approval='{request.pk}']")
        row.wait_for(timeout=10_000)
        assert row.get_by_test_id("approval-count").inner_text() == "0 of 2"
        assert "firewall" in row.get_by_test_id("explanation").inner_text().lower()
        assert "1 waiting for approval" in page.get_by_test_id("waiting").inner_text()
        assert "web-01" in page.locator("#fleet").inner_text()

    # and a new problem on another host reaches the event list live
    other_agent.post_metrics(other_agent.sample("cpu"))
    second.locator("#events li[data-action='execution.dispatched']").wait_for(timeout=10_000)

    # when the first supervisor opens Approve: the current readings and what will run
    first.locator(f"button[data-verdict='approve'][data-id='{request.pk}']").click()
    context = first.locator("#verdict-context").inner_text()
    assert "Firewall change requested\nyes" in context
    assert request.runbook.name in context
    assert "risk" in context
    first.fill("#verdict-note", "checked the rule with netops")
    first.click("#verdict-submit")
    first.locator("#verdict-dialog").wait_for(state="hidden")

    # then the second console counts it without a reload
    second.locator(f"tr[data-approval='{request.pk}'] [data-testid='approval-count']").filter(
        has_text="1 of 2"
    ).wait_for(timeout=10_000)
    approval = request.approvals.get()
    assert (approval.approver, approval.comment) == (alice, "checked the rule with netops")

    # when the second approves, the request leaves both consoles
    dialog = give_verdict(second, request, "approve", "agreed")
    dialog.wait_for(state="hidden")
    for page in (first, second):
        page.locator(f"tr[data-approval='{request.pk}']").wait_for(state="detached", timeout=10_000)
    request.refresh_from_db()
    assert request.status == "approved"
    first.context.close()
    second.context.close()


def test_a_rejection_needs_a_reason_and_says_so(browser, client, live_asgi, agent, alice):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    page = open_console(browser, live_asgi, alice)

    # when the supervisor rejects without a reason, nothing is recorded
    dialog = give_verdict(page, request, "reject", "   ")
    assert "needs a reason" in page.locator("#verdict-error").inner_text()
    assert dialog.is_visible()
    assert not request.approvals.exists()

    # with a reason, it is rejected and leaves the panel
    page.fill("#verdict-note", "change freeze until Monday")
    page.click("#verdict-submit")
    page.locator(f"tr[data-approval='{request.pk}']").wait_for(state="detached", timeout=10_000)
    request.refresh_from_db()
    assert request.status == "rejected"
    assert request.approvals.get().comment == "change freeze until Monday"

    # and the ticket, now people's, is counted in the banner without a reload
    escalated = page.get_by_test_id("escalated")
    escalated.filter(has_text="1 escalated to people").wait_for(timeout=10_000)
    assert page.get_by_test_id("banner").get_attribute("data-level") == "attention"
    escalated.get_by_role("link").click()
    page.wait_for_load_state()
    assert "status__exact=escalated" in page.url
    assert request.ticket.ticket_id in page.locator("#result_list").inner_text()
    page.context.close()


def test_the_console_is_for_staff_only(browser, client, live_asgi):
    page = browser.new_page()
    page.goto(f"{live_asgi}/console/")
    assert "/admin/login/" in page.url
    page.close()


def test_an_event_lost_or_overtaken_on_the_way_is_fetched_again_and_shown_in_order(
    browser, live_asgi, alice
):
    """Each process publishes after its own commit, so a later event can arrive first;
    the console must neither drop the earlier one nor show it out of place."""
    from django.db import transaction

    from governance.audit.log import PendingEvent, append_events

    dropped = []

    def relay(route):
        server = route.connect_to_server()

        def from_server(message):
            frame = json.loads(message)
            events = frame.get("events", [])
            # the first live "note.added" event is lost on the way (once), the rest of its
            # frame arriving
            lost = next((e for e in events if e["action"] == "note.added"), None)
            if lost is not None and not dropped:
                dropped.append(lost["sequence"])
                frame["events"] = [e for e in events if e is not lost]
                message = json.dumps(frame)
            route.send(message)

        server.on_message(from_server)
        route.on_message(server.send)

    page = open_console(
        browser, live_asgi, alice, before_load=lambda p: p.route_web_socket("**/ws/console", relay)
    )

    with transaction.atomic():
        append_events(
            [
                PendingEvent("user:alice", "note.added", "Note", str(n), f"note {n}")
                for n in range(3)
            ]
        )

    # then all three show, the lost one fetched again, newest first
    page.locator("#events li[data-action='note.added']").nth(2).wait_for(timeout=10_000)
    shown = page.locator("#events li[data-action='note.added']").evaluate_all(
        "items => items.map(item => Number(item.dataset.sequence))"
    )
    assert dropped and dropped[0] in shown
    assert shown == sorted(shown, reverse=True) and len(shown) == 3
    page.context.close()
