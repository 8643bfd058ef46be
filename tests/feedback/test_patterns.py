"""Pattern learning: tickets join patterns, outcomes and feedback accumulate on them."""

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from feedback.models import Feedback, Pattern
from feedback.patterns import (
    PatternMatch,
    closest,
    eligibility_thresholds,
    is_eligible,
    key_terms,
    record_occurrence,
    similarity,
)
from governance.models import AuditEvent, Decision
from remediation.actions import add_host, close_ticket
from remediation.models import Execution, Ticket
from tests.conftest import AgentClient
from tests.governance.admin_pages import form_data, logged_in
from tests.remediation.test_alerts import AM, am_alert, am_body

# These tests count what automatic fixes earn their pattern: they start trusting.
pytestmark = pytest.mark.usefixtures("trusting_policies")


def test_key_terms_are_the_features_that_pushed_the_class_strongest_first():
    explanation = [("disk_usage", 0.61), ("disk_usage_change", 0.2), ("cpu_usage", 0.004)]
    assert key_terms(explanation) == ("disk_usage", "disk_usage_change")


def test_a_ticket_joins_the_closest_pattern_only_when_similar_enough():
    disk = SimpleNamespace(key_terms=["disk_usage", "disk_usage_change"], occurrence_count=4)
    memory = SimpleNamespace(key_terms=["memory_usage"], occurrence_count=9)

    assert similarity(["disk_usage"], ["disk_usage", "disk_usage_change"]) == 0.5
    assert closest(("disk_usage",), [disk, memory]) == (disk, 0.5)
    assert closest(("cpu_usage",), [disk, memory]) == (None, 0.0)


@pytest.mark.parametrize(
    ("changes", "eligible"),
    [
        ({}, True),
        ({"occurrence_count": 4}, False),
        ({"positive_count": 8, "negative_count": 2}, False),
        ({"avg_reliability": 84.9}, False),
        ({"auto_remediation_successes": 8}, False),
    ],
)
def test_the_seeds_eligibility_rule(changes, eligible):
    fields = {
        "occurrence_count": 5,
        "positive_count": 9,
        "negative_count": 1,
        "neutral_count": 0,
        "avg_reliability": 85.0,
        "auto_remediation_attempts": 10,
        "auto_remediation_successes": 9,
    }
    assert is_eligible(Pattern(**{**fields, **changes})) is eligible


def heal_disk(agent: AgentClient) -> Ticket:
    response = agent.post_metrics(agent.sample("disk"))
    [result] = response.json()["results"]
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    return Ticket.objects.get(ticket_id=result["ticket_id"])


def test_healed_tickets_build_a_pattern_that_raises_reliability(
    agent, client, django_capture_on_commit_callbacks
):
    # given three hosts whose disks filled and were healed automatically
    tickets = [heal_disk(agent)]
    for name in ("web-02", "web-03"):
        host, key = add_host(name, now=timezone.now())
        tickets.append(
            heal_disk(AgentClient(client, host, key, django_capture_on_commit_callbacks))
        )

    # then they share one pattern with three automatic successes
    [pattern] = Pattern.objects.filter(category="disk")
    assert {t.pattern_id for t in Ticket.objects.filter(pk__in=[t.pk for t in tickets])} == {
        pattern.pk
    }
    assert (pattern.occurrence_count, pattern.success_count) == (3, 3)
    assert (pattern.auto_remediation_attempts, pattern.auto_remediation_successes) == (3, 3)
    assert "disk_usage" in pattern.key_terms
    first = Decision.objects.get(ticket=tickets[0])
    assert first.reliability["pattern_match"] == 0.0  # nothing known yet

    # when a fourth host's disk fills
    host, key = add_host("web-04", now=timezone.now())
    fourth = AgentClient(client, host, key, django_capture_on_commit_callbacks)
    [result] = fourth.post_metrics(fourth.sample("disk")).json()["results"]

    # then the decision recognises the pattern in its reliability breakdown
    decision = Decision.objects.get(ticket__ticket_id=result["ticket_id"])
    assert decision.reliability["pattern_match"] > 0
    assert decision.reliability["overall_score"] > first.reliability["overall_score"]


def test_feedback_given_in_the_admin_counts_on_the_pattern_and_is_audited(agent, alice):
    # given a healed ticket
    ticket = heal_disk(agent)

    # when a supervisor gives positive feedback in the admin
    browser = logged_in(alice)
    page = browser.get("/admin/feedback/feedback/add/")
    data = form_data(page, ticket=ticket.pk, feedback_type="positive", rating=5)
    response = browser.post("/admin/feedback/feedback/add/", {**data, "_save": "Save"})

    # then it is stored as hers, counted on the pattern, and audited
    assert response.status_code == 302, response.context["adminform"].form.errors
    feedback = Feedback.objects.get(ticket=ticket)
    assert feedback.submitted_by == alice
    assert Pattern.objects.get(pk=ticket.pattern_id).positive_count == 1
    assert AuditEvent.objects.filter(ticket_id=ticket.ticket_id, action="feedback.given").exists()


def test_a_fix_an_alert_verified_earns_its_pattern_no_automatic_success(
    agent, alice, api, django_capture_on_commit_callbacks
):
    # given web-01's disk ticket closed by hand while its readings still show 97%
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    close_ticket(ticket, actor=alice, resolved=True, reason="cleaned by hand", now=timezone.now())
    sender = User.objects.create_user("alertmanager")
    sender.groups.add(Group.objects.get(name="alert senders"))
    alerts = api(sender)

    # and an opted-in alert on the host whose fix runs
    firing = alerts.post(AM, am_body(am_alert(warden_auto_remediation="true")))
    alert_ticket = Ticket.objects.get(ticket_id=firing.json()["alerts"][0]["ticket_id"])
    [action] = agent.take_actions()
    agent.report(action, ok=True)
    pattern_before = Pattern.objects.get(pk=alert_ticket.pattern_id)

    # when the alert's sender says it resolved before the host sent a reading since the fix
    # (a reading still showing the problem would outweigh the alert: test_alert_trust.py)
    resolved = am_alert(warden_auto_remediation="true", status="resolved")
    resolved["endsAt"] = timezone.now().isoformat()
    alerts.post(AM, am_body(resolved))

    # then the ticket may be resolved, but the pattern's automation earned nothing from it
    execution = Execution.objects.get(ticket=alert_ticket)
    assert (execution.state, execution.verified_by) == ("succeeded", "alert")
    pattern = Pattern.objects.get(pk=alert_ticket.pattern_id)
    assert pattern.auto_remediation_successes == pattern_before.auto_remediation_successes
    assert pattern.auto_remediation_attempts == pattern_before.auto_remediation_attempts
    succeeded = AuditEvent.objects.get(action="execution.succeeded")
    assert succeeded.data["verified_by"] == "alert"


def test_a_fix_the_hosts_readings_verified_earns_its_pattern_an_automatic_success(agent):
    ticket = heal_disk(agent)

    execution = Execution.objects.get(ticket=ticket)
    assert (execution.state, execution.verified_by) == ("succeeded", "readings")
    pattern = Pattern.objects.get(pk=ticket.pattern_id)
    assert (pattern.auto_remediation_attempts, pattern.auto_remediation_successes) == (1, 1)


def test_counting_tickets_on_a_pattern_leaves_history_only_when_what_it_may_do_changes(agent):
    # given a pattern one occurrence short of eligibility: liked, trusted, fixes that worked
    ticket = heal_disk(agent)
    pattern = ticket.pattern
    needed, _ = eligibility_thresholds()
    Pattern.objects.filter(pk=pattern.pk).update(
        occurrence_count=needed - 1,
        positive_count=10,
        avg_reliability=95.0,
        auto_remediation_attempts=10,
        auto_remediation_successes=10,
        eligible_for_auto_remediation=False,
    )
    pattern.refresh_from_db()
    versions = pattern.history.count()

    def count_one() -> Pattern:
        match = PatternMatch(pattern, 1.0, tuple(pattern.key_terms))
        return record_occurrence(
            ticket, match, confidence=0.99, reliability=95.0, now=ticket.opened_at
        )

    # when the ticket that makes it eligible is counted, then one that changes nothing
    counted = count_one()
    after_the_change = counted.history.count()
    counted = count_one()

    # then the change of what it may do has its history row, the plain count none
    assert counted.occurrence_count == needed + 1 and counted.eligible_for_auto_remediation
    assert after_the_change == versions + 1
    assert counted.history.latest().eligible_for_auto_remediation
    assert counted.history.count() == after_the_change
