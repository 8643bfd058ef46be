"""A supervisor sees what a host's agent allows, and why a runbook it would refuse waits."""

import json
from pathlib import Path

import pytest

from remediation.models import Ticket
from tests.e2e.test_compliance import signed_in
from warden_agent.argv import allowlist_digest

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "agent/examples/allowlist.json").read_text())


def test_the_host_page_shows_the_allow_list_and_the_story_says_what_it_refuses(
    browser, live_asgi, agent, alice, tmp_path
):
    # given an agent that reported an allow-list without the disk clean-up
    entries = {k: v for k, v in EXAMPLE.items() if k != "clean_temp_and_rotate_logs"}
    body = {"entries": entries, "digest": allowlist_digest(entries), "agent_version": "1.0.0"}
    with agent.capture(execute=True):
        agent.client.put(
            "/api/v1/agent/allowlist",
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {agent.key}",
        )
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])

    # when the supervisor opens the host
    page = signed_in(browser, live_asgi, alice)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{live_asgi}/admin/remediation/host/{agent.host.pk}/change/")

    # then its agent's allow-list is there, each action with the exact command it allows
    allows = page.locator(".field-agent_allows").inner_text()
    assert "restore_quarantined_files" in allows and "warden-runbook disk-restore" in allows
    assert "clean_temp_and_rotate_logs" not in allows
    assert allowlist_digest(entries) in allows
    page.screenshot(path=str(tmp_path / "host.png"), full_page=True)

    # and the ticket's story says a person handles it, because the agent would refuse it
    page.goto(f"{live_asgi}/admin/remediation/ticket/{ticket.pk}/change/")
    decisions = page.locator("#decisions").inner_text()
    assert "would refuse it" in decisions
    page.screenshot(path=str(tmp_path / "story.png"), full_page=True)
