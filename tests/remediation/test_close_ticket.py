"""People close tickets in the admin: resolved by hand or closed unresolved, never mid-action."""

import pytest

from feedback.models import Pattern
from governance.models import ApprovalRequest, AuditEvent
from remediation.models import Ticket

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

CHANGELIST = "/admin/remediation/ticket/"


def act_in_admin(client, user, ticket, action, note):
    client.force_login(user)
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [ticket.pk], "confirmed": "yes", "note": note},
        follow=True,
    )


def open_ticket(agent, problem) -> Ticket:
    [result] = agent.post_metrics(agent.sample(problem)).json()["results"]
    return Ticket.objects.get(ticket_id=result["ticket_id"])


def test_a_ticket_awaiting_approval_is_resolved_by_hand(agent, client, alice):
    # given a DNS ticket waiting for approvers
    ticket = open_ticket(agent, "dns")
    assert ticket.status == "awaiting_approval"

    # when a supervisor fixes it by hand and says so
    page = act_in_admin(client, alice, ticket, "resolve_action", "switched resolver manually")

    # then the ticket is resolved, its approval request is void, and it is audited
    assert b"resolved by hand" in page.content
    ticket.refresh_from_db()
    assert (ticket.status, ticket.resolution) == ("resolved", "switched resolver manually")
    assert ApprovalRequest.objects.get(ticket=ticket).status == "voided"
    event = AuditEvent.objects.get(ticket_id=ticket.ticket_id, action="ticket.resolved")
    assert event.actor == "user:alice"
    assert Pattern.objects.get(pk=ticket.pattern_id).success_count == 1


def test_a_failed_automatic_fix_closed_unresolved_counts_against_its_pattern(agent, client, alice):
    # given a disk clean-up that failed and was rolled back, leaving the ticket to people
    ticket = open_ticket(agent, "disk")
    [action] = agent.take_actions()
    agent.report(action, ok=False, output="permission denied")
    [rollback] = agent.take_actions()
    agent.report(rollback)
    ticket.refresh_from_db()
    assert ticket.status == "partially_remediated"

    # when a supervisor closes it unresolved
    act_in_admin(client, alice, ticket, "close_action", "host decommissioned")

    # then the pattern learns that automation failed here
    ticket.refresh_from_db()
    assert ticket.status == "closed"
    pattern = Pattern.objects.get(pk=ticket.pattern_id)
    assert (pattern.failure_count, pattern.auto_remediation_attempts) == (1, 1)
    assert pattern.auto_remediation_successes == 0


def test_closing_a_ticket_with_a_running_action_cancels_it_and_keeps_its_late_report(
    agent, client, alice
):
    # given a disk clean-up the agent is running
    ticket = open_ticket(agent, "disk")
    [action] = agent.take_actions()

    # when a supervisor closes the ticket
    act_in_admin(client, alice, ticket, "close_action", "host rebuilt")

    # then the execution is cancelled with the closing note, and the ticket closed
    ticket.refresh_from_db()
    assert ticket.status == "closed"
    execution = ticket.executions.get()
    assert execution.state == "cancelled"
    assert "host rebuilt" in execution.cancel_reason
    # and the agent's report, when it comes, is kept on the record, not lost
    assert agent.report(action, ok=True, output="cleaned 2 GiB").status_code == 409
    execution.refresh_from_db()
    assert "cleaned 2 GiB" in execution.output
    assert AuditEvent.objects.filter(action="execution.late_report").exists()


def test_compliance_staff_cannot_close_tickets(agent, client, dave):
    ticket = open_ticket(agent, "dns")

    act_in_admin(client, dave, ticket, "close_action", "trying")

    ticket.refresh_from_db()
    assert ticket.status == "awaiting_approval"
