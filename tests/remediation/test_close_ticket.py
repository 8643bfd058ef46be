"""People close tickets in the admin: resolved by hand or closed unresolved, never mid-action."""

from feedback.models import Pattern
from governance.models import ApprovalRequest, AuditEvent
from remediation.models import Ticket

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

    # then the ticket is resolved, its approval request expires, and it is audited
    assert b"resolved by hand" in page.content
    ticket.refresh_from_db()
    assert (ticket.status, ticket.resolution) == ("resolved", "switched resolver manually")
    assert ApprovalRequest.objects.get(ticket=ticket).status == "expired"
    event = AuditEvent.objects.get(ticket_id=ticket.ticket_id, action="ticket.resolved")
    assert event.actor == "user:alice"
    assert Pattern.objects.get(pk=ticket.pattern_id).success_count == 1


def test_a_failed_automatic_fix_closed_unresolved_counts_against_its_pattern(agent, client, alice):
    # given a disk clean-up that failed and was rolled back, leaving the ticket escalated
    ticket = open_ticket(agent, "disk")
    [action] = agent.take_actions()
    agent.report(action, ok=False, output="permission denied")
    [rollback] = agent.take_actions()
    agent.report(rollback)
    ticket.refresh_from_db()
    assert ticket.status == "escalated"

    # when a supervisor closes it unresolved
    act_in_admin(client, alice, ticket, "close_action", "host decommissioned")

    # then the pattern learns that automation failed here
    ticket.refresh_from_db()
    assert ticket.status == "closed"
    pattern = Pattern.objects.get(pk=ticket.pattern_id)
    assert (pattern.failure_count, pattern.auto_remediation_attempts) == (1, 1)
    assert pattern.auto_remediation_successes == 0


def test_a_ticket_with_a_running_action_cannot_be_closed(agent, client, alice):
    # given a disk clean-up the agent is running
    ticket = open_ticket(agent, "disk")
    agent.take_actions()

    # when a supervisor tries to close the ticket
    page = act_in_admin(client, alice, ticket, "close_action", "done")

    # then it is refused, saying why, and nothing changes
    assert b"still running" in page.content
    ticket.refresh_from_db()
    assert ticket.status == "remediating"


def test_compliance_staff_cannot_close_tickets(agent, client, dave):
    ticket = open_ticket(agent, "dns")

    act_in_admin(client, dave, ticket, "close_action", "trying")

    ticket.refresh_from_db()
    assert ticket.status == "awaiting_approval"
