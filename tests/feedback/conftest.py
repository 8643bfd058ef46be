"""Fixtures the feedback tests share."""

import pytest

from remediation.models import Ticket


@pytest.fixture
def healed(agent, trusting_policies) -> Ticket:
    """A disk on web-01 that filled and was healed by itself: a ticket with a pattern."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    return Ticket.objects.get(ticket_id=result["ticket_id"])
