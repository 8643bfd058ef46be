"""A supervisor reverses a remediation from the admin; read-only staff cannot."""

import pytest

from governance.models import AuditEvent
from remediation.models import Execution

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

CHANGELIST = "/admin/remediation/execution/"


@pytest.fixture
def healed(agent) -> Execution:
    """A disk clean-up that ran and was verified."""
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    execution = Execution.objects.get()
    assert execution.state == "succeeded"
    return execution


def roll_back_in_admin(client, user, execution, note):
    client.force_login(user)
    return client.post(
        CHANGELIST,
        {
            "action": "roll_back_action",
            "_selected_action": [execution.pk],
            "confirmed": "yes",
            "note": note,
        },
        follow=True,
    )


def test_a_supervisor_rolls_back_and_the_agent_gets_the_rollback(agent, client, alice, healed):
    page = roll_back_in_admin(client, alice, healed, "the clean-up removed a needed file")

    assert b"sent to the agent" in page.content
    healed.refresh_from_db()
    assert healed.state == "rollback_pending"
    [action] = agent.take_actions()
    assert action["action"] == healed.runbook.rollback_action
    event = AuditEvent.objects.get(action="execution.rollback_pending")
    assert event.actor == "user:alice"
    assert "needed file" in event.summary


def test_compliance_cannot_roll_back(agent, client, dave, healed):
    page = roll_back_in_admin(client, dave, healed, "trying")

    assert page.status_code == 200
    healed.refresh_from_db()
    assert healed.state == "succeeded"
    assert agent.take_actions() == []
