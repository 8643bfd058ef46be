"""What changed between a decision and its execution is checked again where the execution starts."""

import json

import pytest
from django.utils import timezone

from governance.models import AuditEvent, Policy
from remediation.executions import dispatch_execution
from remediation.models import Execution


def queue_disk_clean_up(agent, django_capture_on_commit_callbacks) -> Execution:
    """A disk problem decided AUTO_HEAL, its execution queued but not yet dispatched."""
    with django_capture_on_commit_callbacks(execute=False):
        agent.client.post(
            "/api/v1/metrics",
            data=json.dumps(agent.sample("disk")),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {agent.key}",
        )
    execution = Execution.objects.get()
    assert execution.state == "queued"
    return execution


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"mode": "shadow"}, "is now in shadow mode"),
        ({"enabled": False}, "No enabled policy covers disk any more"),
        ({"requires_backup": True}, "No backup of the host is available"),
    ],
)
def test_a_policy_changed_after_the_decision_stops_the_automatic_execution(
    agent, django_capture_on_commit_callbacks, change, why
):
    # given a queued automatic clean-up
    execution = queue_disk_clean_up(agent, django_capture_on_commit_callbacks)

    # when a supervisor changes the disk policy before a worker picks it up
    Policy.objects.filter(category="disk").update(**change)
    state = dispatch_execution(execution.pk, timezone.now())

    # then it is cancelled, saying why, and the agent gets nothing
    assert state == "cancelled"
    event = AuditEvent.objects.get(action="execution.cancelled")
    assert why in event.summary
    assert agent.take_actions() == []
    execution.ticket.refresh_from_db()
    assert execution.ticket.status == "escalated"


def test_a_host_with_a_backup_runs_under_a_policy_requiring_one(
    agent, django_capture_on_commit_callbacks
):
    # given a queued clean-up on a host the backup system has labelled
    execution = queue_disk_clean_up(agent, django_capture_on_commit_callbacks)
    agent.host.labels = {**agent.host.labels, "backup": "yes"}
    agent.host.save(update_fields=["labels"])
    Policy.objects.filter(category="disk").update(requires_backup=True)

    # when the worker dispatches it
    state = dispatch_execution(execution.pk, timezone.now())

    # then it goes to the agent
    assert state == "dispatched"
    [action] = agent.take_actions()
    assert action["execution_id"] == execution.pk
