"""An approver acts on an emailed notice in Chromium: sign in, read, confirm, once."""

import re

import pytest
from django.core import mail

from governance.models import ApprovalRequest

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_an_approver_approves_from_the_emailed_link_after_signing_in_and_only_once(
    browser, live_asgi, agent, bob, settings
):
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 0
    settings.WARDEN_NOTICE_BASE_URL = live_asgi
    bob.set_password("correct horse battery")
    bob.save()

    # given a firewall change waiting for two approvers: bob is emailed about it
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    [message] = [m for m in mail.outbox if m.to == [bob.email]]
    [approve_url] = re.findall(r"^Approve: +(\S+)$", message.body, flags=re.M)
    assert approve_url.startswith(f"{live_asgi}/notices/")

    # when he follows the link, signed out: Warden asks him to sign in first
    page = browser.new_page()
    page.goto(approve_url)
    assert "/admin/login/" in page.url
    page.fill("#id_username", "bob")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")
    page.wait_for_load_state()

    # then the confirmation page shows what he needs to decide, and nothing is approved yet
    text = page.locator("#content").inner_text()
    assert "web-01" in text and request.runbook.name in text
    assert "approvals 0 of 2" in text
    assert "warden-runbook nft-apply --file /etc/warden/requested-change.nft" in text
    assert not request.approvals.exists()

    # when he confirms with a note, it is approved through the same use case, by him
    page.fill("textarea", "matches change request CR-1142")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_load_state()
    assert "Done: you approved" in page.locator("#content").inner_text()
    approval = request.approvals.get()
    assert (approval.approver, approval.comment) == (bob, "matches change request CR-1142")

    # and the same link, followed again, does nothing and says why
    response = page.goto(approve_url)
    assert response.status == 410
    assert "already" in page.locator("#content").inner_text().lower()
    assert request.approvals.count() == 1
    page.close()
