"""Pattern learning: tickets join patterns, outcomes and feedback accumulate on them."""

from types import SimpleNamespace

import pytest
from django.utils import timezone

from feedback.models import Feedback, Pattern
from feedback.patterns import closest, is_eligible, key_terms, similarity
from governance.models import AuditEvent, Decision
from remediation.actions import add_host
from remediation.models import Ticket
from tests.conftest import AgentClient
from tests.governance.admin_pages import form_data, logged_in


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
