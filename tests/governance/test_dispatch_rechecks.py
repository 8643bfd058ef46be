"""What changed between a decision and its execution is checked again where the execution starts."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest, AuditEvent, Notice, Policy
from remediation.actions import cancel_execution
from remediation.executions.queueing import dispatch_execution
from remediation.executions.sweeps import sweep
from remediation.models import Execution

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


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


@pytest.fixture
def approved_change_held_by_the_blast_radius(
    agent, other_agent, bob, carol, django_capture_on_commit_callbacks
):
    """A DNS change on one host approved by two people while an automatic disk fix on
    another host holds the policy's one-host blast radius."""
    Policy.objects.filter(category="dns").update(blast_radius_max_hosts=1)
    other_agent.post_metrics(other_agent.sample("dns"))
    request = ApprovalRequest.objects.get()
    assert request.decision.safety_checks["blast_radius_ok"]
    queue_disk_clean_up(agent, django_capture_on_commit_callbacks)  # the unrelated fix
    with django_capture_on_commit_callbacks(execute=True):
        approve_request(request, actor=bob, reason="change window", now=timezone.now())
        approve_request(request, actor=carol, reason="checked", now=timezone.now())
    return Execution.objects.get(approval_request=request)


def test_an_approved_change_waits_for_the_blast_radius_instead_of_dying(
    approved_change_held_by_the_blast_radius,
):
    execution = approved_change_held_by_the_blast_radius

    # then it is held, not cancelled, saying why and until when, and people are told
    assert execution.state == "held"
    assert "Blast radius" in execution.hold_reason
    assert execution.hold_until > timezone.now()
    waiting = AuditEvent.objects.get(action="execution.waiting", object_id=str(execution.pk))
    assert "Blast radius" in waiting.summary
    assert execution.ticket.status == "remediating"
    assert Notice.objects.filter(kind="held", ticket=execution.ticket).exists()


def test_a_held_change_starts_as_soon_as_the_room_frees(
    approved_change_held_by_the_blast_radius, alice, django_capture_on_commit_callbacks
):
    held = approved_change_held_by_the_blast_radius
    fix = Execution.objects.exclude(pk=held.pk).get()

    # when the other host's fix ends
    with django_capture_on_commit_callbacks(execute=True):
        cancel_execution(fix, actor=alice, reason="host drained", now=timezone.now())

    # then the held change goes to its agent at once, not at the next sweep
    held.refresh_from_db()
    assert held.state == "dispatched"
    assert AuditEvent.objects.filter(action="execution.released", object_id=str(held.pk)).exists()


def test_a_held_change_is_given_up_at_its_deadline_and_people_told(
    approved_change_held_by_the_blast_radius, django_capture_on_commit_callbacks
):
    held = approved_change_held_by_the_blast_radius

    with django_capture_on_commit_callbacks(execute=True):
        sweep(held.hold_until + timedelta(seconds=1))

    held.refresh_from_db()
    assert held.state == "cancelled"
    assert "timed out waiting" in held.cancel_reason and "Blast radius" in held.cancel_reason
    held.ticket.refresh_from_db()
    assert held.ticket.status == "escalated"


def test_a_sweep_leaves_a_change_held_while_its_checks_still_fail(
    approved_change_held_by_the_blast_radius, django_capture_on_commit_callbacks
):
    held = approved_change_held_by_the_blast_radius

    with django_capture_on_commit_callbacks(execute=True):
        sweep(timezone.now() + timedelta(minutes=5))

    held.refresh_from_db()
    assert held.state == "held"
    waiting = AuditEvent.objects.filter(action="execution.waiting", object_id=str(held.pk))
    assert waiting.count() == 1  # told once, not at every look
