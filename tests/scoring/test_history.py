"""People's verdicts are labels: approvals, rejections, overrides and feedback teach the model."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from feedback.models import Feedback
from governance.approvals.actions import approve_request, reject_request
from governance.approvals.requests import expire_approval_requests
from governance.models import ApprovalRequest, Decision
from remediation.actions import roll_back_execution
from remediation.models import Execution, Ticket
from scoring.choices import Severity
from scoring.features import FEATURE_NAMES
from scoring.history import human_labels, labelled_history

# Its subject is what an automatic fix teaches the model: disk heals from the first ticket.
pytestmark = pytest.mark.usefixtures("trusting_policies")

COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}


@pytest.fixture
def long_ago():
    return timezone.now() - timedelta(days=1)


def report_problem(agent, problem: str) -> tuple[Ticket, int]:
    """The agent reports `problem`; returns its ticket and the sample the decision was made on."""
    [result] = agent.post_metrics(agent.sample(problem)).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    return ticket, Decision.objects.get(ticket=ticket).sample_id


def heal(agent, problem: str, ok: bool = True) -> tuple[Ticket, int]:
    """A safe problem the system heals alone; fresh healthy metrics verify it."""
    ticket, sample_id = report_problem(agent, problem)
    [action] = agent.take_actions()
    agent.report(action, ok=ok)
    agent.post_metrics(agent.sample())
    return ticket, sample_id


def give_feedback(ticket: Ticket, user, kind: str) -> Feedback:
    return Feedback.objects.create(ticket=ticket, submitted_by=user, feedback_type=kind)


def test_an_approved_remediation_says_a_person_was_needed(agent, bob, carol, long_ago):
    # given a risky problem both approvers said yes to
    ticket, sample_id = report_problem(agent, "firewall")
    request = ApprovalRequest.objects.get(ticket=ticket)
    for approver in (bob, carol):
        approve_request(request, actor=approver, reason="change window", now=timezone.now())

    # when / then
    assert human_labels(long_ago) == {sample_id: Severity.HITL_REQUIRED}


def test_a_rejected_remediation_still_says_a_person_was_needed(agent, bob, long_ago):
    # given a risky change an approver vetoed: a veto is not "harmless, never ask again"
    ticket, sample_id = report_problem(agent, "dns")
    request = ApprovalRequest.objects.get(ticket=ticket)
    reject_request(request, actor=bob, reason="not during the sale", now=timezone.now())

    # when / then
    assert human_labels(long_ago) == {sample_id: Severity.HITL_REQUIRED}


def test_a_supervisor_rolling_back_an_auto_heal_overrides_it(agent, alice, long_ago):
    # given a disk problem healed without a person, then undone by a supervisor
    ticket, sample_id = heal(agent, "disk")
    execution = Execution.objects.get(ticket=ticket)
    assert execution.state == "succeeded"
    roll_back_execution(execution, actor=alice, reason="cleaned the wrong logs", now=timezone.now())

    # when / then
    assert human_labels(long_ago) == {sample_id: Severity.HITL_REQUIRED}


def test_positive_feedback_on_a_healed_ticket_confirms_auto_heal(agent, alice, long_ago):
    ticket, sample_id = heal(agent, "memory")
    give_feedback(ticket, alice, "positive")

    assert human_labels(long_ago) == {sample_id: Severity.AUTO_HEAL}


def test_negative_feedback_on_an_auto_healed_ticket_asks_for_a_person(agent, alice, long_ago):
    ticket, sample_id = heal(agent, "cpu")
    give_feedback(ticket, alice, "negative")

    assert human_labels(long_ago) == {sample_id: Severity.HITL_REQUIRED}


def test_the_most_cautious_verdict_wins(agent, alice, bob, long_ago):
    # given one person pleased and another not with the same auto-heal
    ticket, sample_id = heal(agent, "disk")
    give_feedback(ticket, alice, "positive")
    give_feedback(ticket, bob, "negative")

    assert human_labels(long_ago) == {sample_id: Severity.HITL_REQUIRED}


def test_feedback_labels_the_sample_the_auto_heal_was_decided_on(agent, alice, long_ago):
    # given a ticket whose problem repeats after it was decided
    ticket, sample_id = report_problem(agent, "disk")
    agent.post_metrics(agent.sample("disk", disk_usage=98.0))
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    assert ticket.samples.count() == 2
    give_feedback(ticket, alice, "positive")

    # then only the decided sample carries the verdict
    assert human_labels(long_ago) == {sample_id: Severity.AUTO_HEAL}


def test_what_nobody_judged_is_not_a_label(agent, other_agent, alice, long_ago):
    # given the model's own verdicts, a failed auto-heal the system rolled back itself,
    # a request nobody answered before it expired, and neutral feedback
    agent.post_metrics([agent.sample(), agent.sample()])
    healed, _ = heal(agent, "disk")
    failed, _ = heal(other_agent, "memory", ok=False)
    give_feedback(failed, alice, "positive")  # about the people who fixed it afterwards
    give_feedback(healed, alice, "neutral")
    ticket, _ = report_problem(agent, "firewall")
    request = ApprovalRequest.objects.get(ticket=ticket)
    expire_approval_requests(request.expires_at + timedelta(seconds=1))
    request.refresh_from_db()
    assert request.status == "expired"

    # when / then
    assert human_labels(long_ago) == {}
    X, y = labelled_history(long_ago)
    assert X.shape == (0, len(FEATURE_NAMES))
    assert y.shape == (0,)


def test_verdicts_before_the_window_are_left_out(agent, bob, alice):
    # given a rejection long ago and positive feedback now
    old_ticket, _ = report_problem(agent, "dns")
    request = ApprovalRequest.objects.get(ticket=old_ticket)
    reject_request(request, actor=bob, reason="too risky today", now=timezone.now())
    ApprovalRequest.objects.filter(pk=request.pk).update(
        decided_at=timezone.now() - timedelta(days=200)
    )
    ticket, sample_id = heal(agent, "disk")
    give_feedback(ticket, alice, "positive")

    # when / then
    assert human_labels(timezone.now() - timedelta(days=180)) == {sample_id: Severity.AUTO_HEAL}


def test_labelled_rows_are_the_features_the_model_saw(agent, alice, bob, long_ago):
    # given a healthy reading, then a disk problem healed alone and praised,
    # then a firewall change the approvers vetoed
    agent.post_metrics(agent.sample(disk_usage=45.0))
    disk_ticket, disk_sample = heal(agent, "disk")
    give_feedback(disk_ticket, alice, "positive")
    firewall_ticket, firewall_sample = report_problem(agent, "firewall")
    request = ApprovalRequest.objects.get(ticket=firewall_ticket)
    reject_request(request, actor=bob, reason="too risky today", now=timezone.now())

    # when
    X, y = labelled_history(long_ago)

    # then one row per judged sample, in sample order, deltas against the reading before
    assert disk_sample < firewall_sample
    assert y.tolist() == [Severity.AUTO_HEAL, Severity.HITL_REQUIRED]
    disk_row, firewall_row = X
    assert disk_row[COLUMN["disk_usage"]] == 97.0
    assert disk_row[COLUMN["disk_usage_delta"]] == pytest.approx(97.0 - 45.0)
    assert disk_row[COLUMN["firewall_change_requested"]] == 0
    assert firewall_row[COLUMN["firewall_change_requested"]] == 1
    # the reading before the firewall one is the healthy one that verified the disk fix
    assert firewall_row[COLUMN["disk_usage_delta"]] == 0.0
    assert np.isfinite(X).all()
