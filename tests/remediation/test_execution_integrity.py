"""An execution runs exactly what was decided and approved, and only while everything
still allows it: runbook edits void and re-decide, the claim re-checks everything,
one action per poll, late reports kept, cancel with a reason, nothing waits for ever."""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from governance.approvals.actions import approve_request, reject_request
from governance.approvals.requests import ApprovalError
from governance.models import ApprovalRequest, AuditEvent, Pause, Policy
from governance.pauses.actions import pause_automation
from governance.pauses.state import record_lapsed_pauses
from governance.policies.actions import save_policy
from remediation.actions import close_ticket, save_runbook
from remediation.executions.claims import claim_agent_actions
from remediation.executions.sweeps import sweep
from remediation.models import Execution, Runbook, Ticket
from warden_agent.agent import Agent
from warden_agent.argv import argv_digest

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def pending_firewall_request(agent) -> ApprovalRequest:
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    return ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"], status="pending")


def dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks) -> Execution:
    """An AUTO_HEAL decision dispatched to the agent, not yet claimed."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    assert result["decision"] == "AUTO_HEAL"
    execution = Execution.objects.get()
    assert execution.state == "dispatched"
    return execution


def edit(runbook: Runbook, user, **changes) -> None:
    for name, value in changes.items():
        setattr(runbook, name, value)
    save_runbook(runbook, actor=user, reason="vendor changed the tool", now=timezone.now())


def test_a_decision_records_exactly_what_it_would_run(agent):
    request = pending_firewall_request(agent)
    decision = request.decision
    runbook = request.runbook
    assert decision.action == runbook.action
    assert decision.argv == runbook.argv and decision.rollback_argv == runbook.rollback_argv
    assert decision.argv_digest == argv_digest(runbook.argv)
    assert request.argv_digest == decision.argv_digest
    assert decision.runbook_version == runbook.history.latest().history_id
    assert request.runbook_version == decision.runbook_version


def test_a_runbook_edit_voids_the_pending_approval_and_decides_again(agent, alice, bob):
    # given a firewall change waiting for approval
    request = pending_firewall_request(agent)
    runbook = request.runbook

    # when a supervisor edits the runbook's action
    edit(runbook, alice, action="apply_firewall_change_v2")

    # then the old request is void, audited with the cause, and nobody can approve it
    request.refresh_from_db()
    assert request.status == "voided"
    assert "runbook" in request.void_reason
    voided = AuditEvent.objects.get(action="approval.voided", object_id=str(request.pk))
    assert "changed" in voided.summary
    with pytest.raises(ApprovalError):
        approve_request(request, actor=bob, reason="ok", now=timezone.now())
    # and the ticket was decided again on the new text: a new request for version 2
    fresh = ApprovalRequest.objects.get(ticket=request.ticket, status="pending")
    assert fresh.decision.action == "apply_firewall_change_v2"
    assert fresh.runbook_version == runbook.history.latest().history_id
    redecided = AuditEvent.objects.filter(action="decision.made", ticket_id=fresh.ticket.ticket_id)
    assert any("decided again" in e.summary for e in redecided)
    assert AuditEvent.objects.get(action="runbook.changed").data["reason"]


def test_a_forbidden_command_added_after_dispatch_never_reaches_the_agent(
    agent, alice, django_capture_on_commit_callbacks
):
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)

    edit(execution.runbook, alice, argv=["shutdown", "-h", "now"])

    assert agent.take_actions() == []
    execution.refresh_from_db()
    assert execution.state == "cancelled"
    assert "changed" in execution.cancel_reason
    # decided again under the new text: the floor refuses it, so a person handles it
    ticket = execution.ticket
    ticket.refresh_from_db()
    assert ticket.status == "escalated"
    assert not Execution.objects.exclude(pk=execution.pk).exists()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"mode": "shadow"}, "shadow mode"),
        ({"enabled": False}, "No enabled policy covers disk"),
    ],
)
def test_a_policy_changed_after_dispatch_stops_the_claim(
    agent, alice, django_capture_on_commit_callbacks, change, why
):
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)
    policy = Policy.objects.get(category="disk", enabled=True)
    for name, value in change.items():
        setattr(policy, name, value)
    save_policy(policy, actor=alice, reason="vendor bug", now=timezone.now())

    assert agent.take_actions() == []
    execution.refresh_from_db()
    assert execution.state == "cancelled"
    assert why in execution.cancel_reason
    assert AuditEvent.objects.filter(action="execution.cancelled", summary__contains=why).exists()


def test_a_runbook_disabled_behind_the_use_case_still_stops_the_claim(
    agent, django_capture_on_commit_callbacks
):
    # even a change made around the use case (a shell, a data load) is caught at the claim
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)
    Runbook.objects.filter(pk=execution.runbook_id).update(enabled=False)

    assert agent.take_actions() == []
    execution.refresh_from_db()
    assert execution.state == "cancelled"
    assert "disabled" in execution.cancel_reason


def test_the_agent_gets_one_action_per_poll(agent, django_capture_on_commit_callbacks):
    # two actions dispatched to one host at once
    first_execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)
    second_execution = Execution.objects.get(pk=first_execution.pk)
    second_execution.pk = None
    second_execution.idempotency_key = "second"
    second_execution.save()

    first = agent.take_actions()
    assert len(first) == 1
    assert Execution.objects.filter(state="dispatched").count() == 1  # still waiting
    agent.report(first[0])
    second = agent.take_actions()
    assert len(second) == 1 and second[0]["execution_id"] != first[0]["execution_id"]


def test_a_late_report_is_kept_and_audited_not_lost(agent, settings):
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    # the lease runs out before the agent reports
    sweep(timezone.now() + timedelta(seconds=settings.WARDEN_AGENT_LEASE_SECONDS + 1))

    response = agent.report(action, ok=True, output="freed 4 GiB")

    assert response.status_code == 409
    execution = Execution.objects.get()
    assert "freed 4 GiB" in execution.output
    late = AuditEvent.objects.get(action="execution.late_report")
    assert late.data["output"] == "freed 4 GiB"


def test_the_agent_never_starts_an_action_past_its_lease():
    agent = Agent.__new__(Agent)  # within_lease reads only the action and the clock
    agent.host = "web-01"
    fresh = {"execution_id": 1, "lease_seconds": 120}
    assert agent.within_lease(fresh, received=time.monotonic())
    assert not agent.within_lease(fresh, received=time.monotonic() - 119)


@pytest.mark.parametrize("state", ["queued", "held", "dispatched", "running", "verifying"])
def test_a_supervisor_cancels_any_unfinished_execution_over_the_api(
    agent, client, alice, state, django_capture_on_commit_callbacks
):
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)
    Execution.objects.filter(pk=execution.pk).update(state=state)
    client.force_login(alice)

    missing = client.post(
        f"/api/v1/executions/{execution.pk}/cancel", {}, content_type="application/json"
    )
    assert missing.status_code == 400
    assert "reason" in missing.json()["error"]["fields"]

    response = client.post(
        f"/api/v1/executions/{execution.pk}/cancel",
        {"reason": "maintenance window moved"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    event = AuditEvent.objects.get(action="execution.cancelled")
    assert event.actor == "user:alice" and "maintenance window moved" in event.summary
    assert agent.take_actions() == []


@pytest.mark.parametrize("persona", ["bob", "dave"])
def test_approvers_and_compliance_cannot_cancel(
    request, agent, client, persona, django_capture_on_commit_callbacks
):
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)
    client.force_login(request.getfixturevalue(persona))
    response = client.post(
        f"/api/v1/executions/{execution.pk}/cancel",
        json.dumps({"reason": "no"}),
        content_type="application/json",
    )
    assert response.status_code == 403
    execution.refresh_from_db()
    assert execution.state == "dispatched"


def test_the_sweeper_times_out_every_waiting_state(
    agent, settings, django_capture_on_commit_callbacks
):
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)
    later = timezone.now() + timedelta(seconds=settings.WARDEN_DISPATCH_TIMEOUT_SECONDS + 1)

    report = sweep(later)

    assert report.timed_out == 1
    execution.refresh_from_db()
    assert execution.state == "cancelled"
    assert "the agent did not take it" in execution.cancel_reason


def test_an_unclaimed_rollback_times_out_to_a_person(agent, settings):
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    agent.report(action, ok=False, output="failed")
    execution = Execution.objects.get()
    assert execution.state == "rollback_pending"

    sweep(timezone.now() + timedelta(seconds=settings.WARDEN_DISPATCH_TIMEOUT_SECONDS + 1))

    execution.refresh_from_db()
    assert execution.state == "rollback_failed"
    assert AuditEvent.objects.filter(
        action="execution.rollback_failed", summary__contains="did not take the rollback"
    ).exists()


def test_closing_a_ticket_cancels_what_is_pending_on_it(
    agent, alice, django_capture_on_commit_callbacks
):
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)

    close_ticket(
        execution.ticket, actor=alice, resolved=True, reason="fixed by hand", now=timezone.now()
    )

    execution.refresh_from_db()
    assert execution.state == "cancelled"
    assert Ticket.objects.get(pk=execution.ticket_id).status == "resolved"
    assert agent.take_actions() == []
    assert AuditEvent.objects.filter(
        action="execution.cancelled", object_id=str(execution.pk)
    ).exists()


def test_closing_a_ticket_voids_its_pending_approval(agent, alice):
    request = pending_firewall_request(agent)
    close_ticket(
        request.ticket, actor=alice, resolved=False, reason="not needed", now=timezone.now()
    )
    request.refresh_from_db()
    assert request.status == "voided"
    assert AuditEvent.objects.filter(action="approval.voided", object_id=str(request.pk)).exists()


def test_an_approval_whose_readings_went_healthy_is_voided(agent, bob):
    request = pending_firewall_request(agent)
    agent.post_metrics(agent.sample())  # the host no longer shows the problem

    with pytest.raises(ApprovalError) as error:
        approve_request(request, actor=bob, reason="ok", now=timezone.now())

    assert error.value.code == "voided"
    request.refresh_from_db()
    assert request.status == "voided"
    assert not Execution.objects.exists()


def test_a_lapsing_pause_is_recorded(alice):
    now = timezone.now()
    pause = pause_automation(
        Pause(scope="all", ends_at=now + timedelta(minutes=5)),
        actor=alice,
        reason="freeze",
        now=now,
    )
    assert record_lapsed_pauses(now) == 0

    assert record_lapsed_pauses(now + timedelta(minutes=6)) == 1
    assert record_lapsed_pauses(now + timedelta(minutes=7)) == 0  # recorded once
    pause.refresh_from_db()
    assert pause.lapsed_at is not None
    assert AuditEvent.objects.filter(action="automation.pause_lapsed").count() == 1
    assert Pause.objects.filter(pk=pause.pk).exists()


def test_claims_never_hand_out_an_action_under_a_pause(
    agent, alice, django_capture_on_commit_callbacks
):
    execution = dispatched_disk_clean_up(agent, django_capture_on_commit_callbacks)
    pause_automation(
        Pause(scope="host", host=agent.host), actor=alice, reason="debugging", now=timezone.now()
    )

    assert claim_agent_actions(agent.host, timezone.now()) == []
    execution.refresh_from_db()
    assert execution.state == "held"


def test_a_broker_that_is_down_never_fails_a_committed_request(agent, monkeypatch, settings):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("remediation.executions.rows.async_task", broker_down)

    response = agent.post_metrics(agent.sample("disk"))

    # the request committed and says so; the execution waits for the sweeper
    assert response.status_code == 201
    execution = Execution.objects.get()
    assert execution.state == "queued"
    monkeypatch.undo()
    later = timezone.now() + timedelta(seconds=settings.WARDEN_REQUEUE_AFTER_SECONDS + 1)
    assert sweep(later).requeued == 1


def test_every_escalation_is_recorded_on_the_ticket(agent, alice, bob):
    request = pending_firewall_request(agent)
    reject_request(request, actor=bob, reason="not today", now=timezone.now())
    assert AuditEvent.objects.filter(
        action="ticket.escalated", object_type="Ticket", object_id=str(request.ticket_id)
    ).exists()
