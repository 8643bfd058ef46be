"""The whole flow through the API, one scenario class at a time."""

import re

import pytest

from governance.audit.log import GENESIS_HASH, verify_chain
from governance.models import ApprovalRequest, AuditEvent, Decision
from remediation.models import Execution, Ticket
from scoring.models import MetricSample

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

SAFE = [
    ("disk", "clean_temp_and_rotate_logs"),
    ("memory", "restart_leaking_service"),
    ("cpu", "throttle_runaway_process"),
]
RISKY = [("dns", "switch_dns_resolver"), ("firewall", "apply_firewall_change")]


def approve_via_api(client, user, request_id):
    client.force_login(user)
    response = client.post(
        f"/api/v1/approvals/{request_id}/approve",
        data={"comment": "checked the change window"},
        content_type="application/json",
    )
    client.logout()
    return response


def test_healthy_sample_records_no_action(agent):
    # when
    response = agent.post_metrics(agent.sample())

    # then
    assert response.status_code == 201
    [result] = response.json()["results"]
    assert result["severity"] == "NO_ACTION"
    assert result["decision"] == "NO_ACTION"
    assert result["ticket_id"] is None
    assert MetricSample.objects.count() == 1
    assert not Ticket.objects.exists()
    assert agent.take_actions() == []


@pytest.mark.parametrize(("problem", "action"), SAFE)
def test_safe_problem_heals_itself_and_is_verified(agent, problem, action):
    # given a host whose metrics show a safe problem
    response = agent.post_metrics(agent.sample(problem))
    [result] = response.json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    assert result["category"] == problem
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    assert ticket.status == "remediating"

    # when its agent runs the queued action and fresh metrics come in healthy
    [queued] = agent.take_actions()
    assert queued["action"] == action
    assert queued["kind"] == "run"
    assert agent.report(queued).json()["state"] == "verifying"
    agent.post_metrics(agent.sample())

    # then the execution is verified and the ticket resolved, every step audited
    execution = Execution.objects.get(ticket=ticket)
    assert execution.state == "succeeded"
    ticket.refresh_from_db()
    assert ticket.status == "resolved"
    actions = list(
        AuditEvent.objects.filter(ticket_id=ticket.ticket_id).values_list("action", flat=True)
    )
    assert actions == [
        "ticket.opened",
        "decision.made",
        "execution.queued",
        "execution.dispatched",
        "execution.claimed",
        "execution.started",
        "execution.verifying",
        "execution.succeeded",
        "ticket.resolved",
        # it acted at L3 with nobody asked: a person reviews what it did
        "review.opened",
    ]
    assert verify_chain(AuditEvent.objects.order_by("sequence"), GENESIS_HASH).intact


@pytest.mark.parametrize(("problem", "action"), RISKY)
def test_risky_problem_waits_for_two_approvers_then_runs(
    agent, client, bob, carol, problem, action
):
    # given a risky problem
    [result] = agent.post_metrics(agent.sample(problem)).json()["results"]
    assert result["decision"] == "HITL_REQUIRED", result
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    assert request.required_approvals == 2
    assert agent.take_actions() == []

    # when one approver approves, nothing runs yet
    assert approve_via_api(client, bob, request.pk).json()["status"] == "pending"
    assert agent.take_actions() == []

    # and when the second approves, the agent gets the action
    with agent.capture(execute=True):
        assert approve_via_api(client, carol, request.pk).json()["status"] == "approved"
    [queued] = agent.take_actions()
    assert queued["action"] == action
    agent.report(queued)
    agent.post_metrics(agent.sample())

    # then
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    assert ticket.status == "resolved"
    assert Execution.objects.get(ticket=ticket).requested_by == carol


@pytest.mark.parametrize(("problem", "action"), RISKY)
def test_rejected_risky_problem_never_runs(agent, client, bob, problem, action):
    # given
    [result] = agent.post_metrics(agent.sample(problem)).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])

    # when
    client.force_login(bob)
    response = client.post(
        f"/api/v1/approvals/{request.pk}/reject",
        data={"comment": "not during the sale"},
        content_type="application/json",
    )

    # then
    assert response.json()["status"] == "rejected"
    assert agent.take_actions() == []
    assert not Execution.objects.exists()
    assert Ticket.objects.get(ticket_id=result["ticket_id"]).status == "escalated"


def test_repeats_count_on_the_one_open_ticket(agent):
    # when the same problem is reported three times, once in a batch of two
    first = agent.post_metrics(agent.sample("disk")).json()["results"][0]
    batch = agent.post_metrics([agent.sample("disk"), agent.sample("disk")]).json()["results"]

    # then one ticket counts all three, decided once
    assert {r["ticket_id"] for r in batch} == {first["ticket_id"]}
    ticket = Ticket.objects.get()
    assert ticket.occurrence_count == 3
    assert Decision.objects.filter(ticket=ticket).count() == 1
    assert Execution.objects.filter(ticket=ticket).count() == 1


def test_ticket_ids_read_like_incident_numbers(agent, other_agent):
    first = agent.post_metrics(agent.sample("disk")).json()["results"][0]["ticket_id"]
    second = other_agent.post_metrics(other_agent.sample("cpu")).json()["results"][0]["ticket_id"]
    # (numbered in order; PostgreSQL's sequence is not rolled back with a test's transaction)
    assert re.fullmatch(r"INC-\d{6}", first) and re.fullmatch(r"INC-\d{6}", second)
    assert int(second[4:]) == int(first[4:]) + 1


def test_failed_action_is_rolled_back_and_left_partially_remediated(agent):
    # given an auto-healed disk problem
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [queued] = agent.take_actions()

    # when the agent reports that the action failed
    assert agent.report(queued, ok=False, output="permission denied").status_code == 200

    # then its rollback goes to the agent and the ticket goes to people: partially
    # remediated (the seed's status for a fix that did not hold), audited
    [rollback] = agent.take_actions()
    assert rollback["kind"] == "rollback"
    assert rollback["action"] == "restore_quarantined_files"
    assert agent.report(rollback).json()["state"] == "rolled_back"
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    assert ticket.status == "partially_remediated" and ticket.is_open
    moved = AuditEvent.objects.get(action="ticket.partially_remediated", ticket_id=ticket.ticket_id)
    assert "a person finishes it" in moved.summary


def test_unverified_action_is_rolled_back(agent, settings):
    # given an action the agent says worked
    settings.WARDEN_VERIFY_SAMPLES = 2
    agent.post_metrics(agent.sample("memory"))
    [queued] = agent.take_actions()
    agent.report(queued)

    # when fresh metrics keep showing the problem
    agent.post_metrics([agent.sample("memory"), agent.sample("memory")])

    # then verification fails and the rollback is dispatched
    execution = Execution.objects.get()
    assert execution.state == "rollback_pending"
    [rollback] = agent.take_actions()
    assert rollback["action"] == "restart_service"


def test_every_problem_in_a_sample_opens_its_own_ticket_and_decision(agent):
    # when one reading shows disk and memory both nearly full
    response = agent.post_metrics(agent.sample(disk_usage=97.0, memory_usage=97.0))

    # then each problem has its own ticket, decided on its own
    assert response.status_code == 201
    [result] = response.json()["results"]
    problems = {p["category"]: p for p in result["problems"]}
    assert set(problems) == {"disk", "memory"}
    tickets = {t.category: t for t in Ticket.objects.all()}
    assert set(tickets) == {"disk", "memory"}
    for category, ticket in tickets.items():
        assert problems[category]["ticket_id"] == ticket.ticket_id
        [decision] = Decision.objects.filter(ticket=ticket)
        assert decision.runbook.category == category
        assert problems[category]["decision"] == decision.outcome
    # the answer's own decision and ticket are the strongest problem's
    assert result["ticket_id"] == problems[result["category"]]["ticket_id"]
    # and the sample is stored once, pointing at that ticket
    [stored] = MetricSample.objects.all()
    assert stored.ticket.category == result["category"]
    assert set(stored.categories) == {"disk", "memory"}

    # when the next reading shows both again, each repeat counts on its own ticket
    agent.post_metrics(agent.sample(disk_usage=97.5, memory_usage=97.5))
    assert Ticket.objects.count() == 2
    assert {t.occurrence_count for t in Ticket.objects.all()} == {2}
