"""The admin's home page is a supervisor's dashboard of what needs attention now."""

import pytest
from django.utils import timezone

from governance.switches import pause_automation
from tests.e2e.test_compliance import signed_in

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_the_dashboard_counts_what_waits_and_links_to_it(browser, live_asgi, agent, alice):
    # given a firewall change waiting for people and a paused category
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    pause_automation(
        scope="category",
        category="disk",
        reason="storage migration",
        user=alice,
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
