"""Learning counts the truth: an automatic success only from an execution that passed
verification; every other ending counted for what it was."""

import pytest
from django.utils import timezone

from remediation.actions import close_ticket
from remediation.models import Execution, Runbook, Ticket

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def counts(ticket: Ticket) -> dict[str, int]:
    ticket.refresh_from_db()
    pattern = ticket.pattern
    return {
        "attempts": pattern.auto_remediation_attempts,
        "successes": pattern.auto_remediation_successes,
        "resolved": pattern.success_count,
        "unresolved": pattern.failure_count,
    }


def heal_attempt(agent, ok: bool) -> tuple[Ticket, dict]:
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    assert result["decision"] == "AUTO_HEAL"
    [action] = agent.take_actions()
    agent.report(action, ok=ok, output="done" if ok else "disk still full")
    return Ticket.objects.get(ticket_id=result["ticket_id"]), action


def test_a_verified_automatic_fix_is_an_automatic_success(agent):
    ticket, _ = heal_attempt(agent, ok=True)
    agent.post_metrics(agent.sample())  # healthy: verified
    assert Execution.objects.get().state == "succeeded"
    assert counts(ticket) == {"attempts": 1, "successes": 1, "resolved": 1, "unresolved": 0}


def test_a_failed_fix_rolled_back_then_resolved_by_hand_is_no_automatic_success(agent, alice):
    ticket, _ = heal_attempt(agent, ok=False)
    [rollback] = agent.take_actions()
    assert rollback["kind"] == "rollback"
    agent.report(rollback, ok=True)
    assert Execution.objects.get().state == "rolled_back"
    assert counts(ticket)["attempts"] == 1 and counts(ticket)["successes"] == 0

    close_ticket(
        ticket, actor=alice, resolved=True, reason="freed space by hand", now=timezone.now()
    )

    assert counts(ticket) == {"attempts": 1, "successes": 0, "resolved": 1, "unresolved": 0}


def test_a_failed_rollback_counts_one_failed_attempt(agent):
    ticket, _ = heal_attempt(agent, ok=False)
    [rollback] = agent.take_actions()
    agent.report(rollback, ok=False, output="could not restore")
    assert Execution.objects.get().state == "rollback_failed"
    assert counts(ticket) == {"attempts": 1, "successes": 0, "resolved": 0, "unresolved": 0}


def test_a_fix_that_fails_verification_is_a_failed_attempt(agent, settings):
    settings.WARDEN_VERIFY_SAMPLES = 1
    ticket, _ = heal_attempt(agent, ok=True)
    agent.post_metrics(agent.sample("disk"))  # still full after the fix
    agent.post_metrics(agent.sample("disk"))
    assert Execution.objects.get().state in {"failed", "rollback_pending"}
    assert counts(ticket)["attempts"] == 1 and counts(ticket)["successes"] == 0


def test_a_cancelled_execution_never_ran_and_counts_nothing(agent):
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    Runbook.objects.filter(pk=execution.runbook_id).update(argv=["shutdown", "-h", "now"])
    assert agent.take_actions() == []  # cancelled at the claim (the floor)
    assert Execution.objects.get().state == "cancelled"
    assert counts(execution.ticket)["attempts"] == 0


def test_a_ticket_closed_unresolved_counts_a_failure_not_an_attempt(agent, alice):
    [result] = agent.post_metrics(agent.sample("dns")).json()["results"]  # waits for people
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    close_ticket(ticket, actor=alice, resolved=False, reason="false alarm", now=timezone.now())
    assert counts(ticket) == {"attempts": 0, "successes": 0, "resolved": 0, "unresolved": 1}
