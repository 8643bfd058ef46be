"""Patterns learned from words and readings together, their page, and step 6 by default."""

import pytest
from django.utils import timezone

from feedback import patterns
from feedback.actions import give_feedback
from feedback.models import Feedback, Pattern
from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest, Decision
from remediation.actions import add_host
from remediation.demo_history import record_track_record
from remediation.models import Ticket
from tests.conftest import AgentClient
from tests.governance.admin_pages import logged_in

FULL_DISK = "Disk almost full on web-01: /tmp is filling with stale upload files"
FULL_DISK_AGAIN = "Disk nearly full on db-02: stale upload files filling /tmp"
DISK_READINGS = [("disk_usage", 0.62), ("disk_usage_change", 0.21)]
LEAK = "Java service leaking memory, the OOM killer ended it twice tonight"
LEAK_READINGS = [("memory_usage", 0.7), ("memory_usage_change", 0.2)]


def learned(category: str, text: str, readings: list) -> Pattern:
    """A pattern that has seen one ticket with these words and readings."""
    vectors = patterns.ticket_vectors(text, readings)
    return Pattern.objects.create(
        signature=f"{category}-{len(text)}",
        category=category,
        key_terms=list(patterns.key_terms(readings)),
        centroid=patterns.joined_centroid({}, vectors, 0),
        centroid_members=1,
        occurrence_count=1,
    )


@pytest.mark.django_db
def test_a_ticket_with_the_same_words_and_readings_joins_the_pattern():
    # given a disk pattern learned from one full /tmp
    known = learned("disk", FULL_DISK, DISK_READINGS)

    # when another host reports the same problem in other words, with the same readings
    found = patterns.match("disk", DISK_READINGS, FULL_DISK_AGAIN)

    # then it joins, and says how similar it is
    assert found.pattern == known
    assert patterns.MIN_SIMILARITY <= found.similarity <= 1.0


@pytest.mark.django_db
def test_a_ticket_with_other_words_and_readings_starts_its_own_pattern():
    learned("memory", FULL_DISK, DISK_READINGS)

    found = patterns.match("memory", LEAK_READINGS, LEAK)

    assert found.pattern is None


@pytest.mark.django_db
def test_the_words_tell_two_problems_of_one_category_apart():
    # given a memory pattern learned from a leaking service
    learned("memory", LEAK, LEAK_READINGS)

    # when a ticket with the same readings speaks of something else entirely
    text = "Page cache bloated after the nightly backup; drop caches please"
    found = patterns.match("memory", LEAK_READINGS, text)
    same = patterns.match("memory", LEAK_READINGS, LEAK)

    # then it is less similar than the same words would be
    assert found.similarity < same.similarity


@pytest.mark.django_db
def test_the_joining_threshold_is_the_measured_constant(monkeypatch):
    # given a pattern and a ticket whose similarity to it is s
    known = learned("disk", FULL_DISK, DISK_READINGS)
    s = patterns.match("disk", DISK_READINGS, FULL_DISK_AGAIN).similarity

    # when the threshold is just above s the ticket stays apart; at s it joins
    monkeypatch.setattr(patterns, "MIN_SIMILARITY", s + 0.001)
    assert patterns.match("disk", DISK_READINGS, FULL_DISK_AGAIN).pattern is None
    monkeypatch.setattr(patterns, "MIN_SIMILARITY", s)
    assert patterns.match("disk", DISK_READINGS, FULL_DISK_AGAIN).pattern == known


def test_a_centroid_is_the_members_mean_and_stays_small():
    a = {"text": {"x": 1.0}}
    b = {"text": {"y": 1.0}}

    mean = patterns.joined_centroid(patterns.joined_centroid({}, a, 0), b, 1)

    assert mean == {"text": {"x": 0.5, "y": 0.5}}
    many = {"text": {f"f{i}": 1.0 for i in range(patterns.CENTROID_SIZE * 2)}}
    assert len(patterns.joined_centroid({}, many, 0)["text"]) == patterns.CENTROID_SIZE


def resolve_by_hand(client_agent: AgentClient, approver, judge) -> Ticket:
    """A host's disk fills; a person approves the clean-up, it works, and a person rates it."""
    [result] = client_agent.post_metrics(client_agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    decision = Decision.objects.get(ticket=ticket)
    assert decision.outcome == "HITL_REQUIRED", decision.reasons
    request = ApprovalRequest.objects.get(ticket=ticket, status="pending")
    with client_agent.capture(execute=True):
        approve_request(request, actor=approver, reason="looks right", now=timezone.now())
    [action] = client_agent.take_actions()
    client_agent.report(action)
    client_agent.post_metrics(client_agent.sample())
    give_feedback(
        Feedback(ticket=ticket, feedback_type="positive", rating=5),
        actor=judge,
        reason="",
        now=timezone.now(),
    )
    ticket.refresh_from_db()
    assert ticket.status == "resolved"
    return ticket


def test_a_pattern_earns_autonomy_after_three_resolved_similar_tickets(
    agent, client, alice, bob, django_capture_on_commit_callbacks
):
    # given the default policies: the first three full disks go to people, who approve,
    # see them fixed, and rate them
    hosts = [agent]
    for name in ("web-02", "web-03", "web-04"):
        host, key = add_host(name, now=timezone.now())
        hosts.append(AgentClient(client, host, key, django_capture_on_commit_callbacks))
    first = [resolve_by_hand(host, bob, alice) for host in hosts[:3]]

    # then they share one pattern, now a known good one
    [pattern] = Pattern.objects.filter(category="disk")
    assert {ticket.pattern_id for ticket in first} == {pattern.pk}
    assert patterns.is_known_good(pattern)
    page = logged_in(alice).get(f"/admin/feedback/pattern/{pattern.pk}/change/")
    assert "Known good pattern (the decision&#x27;s step 6): yes" in page.content.decode()

    # when a fourth host's disk fills
    fourth = hosts[3]
    [result] = fourth.post_metrics(fourth.sample("disk")).json()["results"]

    # then it heals by itself: reliability crossed the seed's medium band
    decision = Decision.objects.get(ticket__ticket_id=result["ticket_id"])
    assert decision.outcome == "AUTO_HEAL", decision.reasons
    assert decision.reliability["overall_score"] >= 60.0
    assert decision.reliability["pattern_match"] > 0
    assert len(fourth.take_actions()) == 1


def test_the_pattern_page_lists_its_incidents_newest_first_with_links(agent, alice, bob):
    # given a disk ticket a person handled
    ticket = resolve_by_hand(agent, bob, alice)

    # when a supervisor opens its pattern's page
    page = logged_in(alice).get(f"/admin/feedback/pattern/{ticket.pattern_id}/change/")

    # then the ticket is listed with a link to its own page, its status and similarity
    html = page.content.decode()
    assert page.status_code == 200
    assert f'href="/admin/remediation/ticket/{ticket.pk}/change/"' in html
    assert ticket.ticket_id in html and "Resolved" in html
    assert "Similar resolved tickets 1 of the policy&#x27;s 3" in html
    assert "Eligible for auto-remediation (the seed&#x27;s rule): not yet" in html


def test_the_demos_track_record_lets_the_first_full_disk_heal_by_itself(agent, alice):
    # given the demo's history: three past full disks people resolved and rated
    made = record_track_record([agent.host], alice, timezone.now())

    # when the fleet's first disk fills
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    # then it joins the earned pattern and heals without a person
    decision = Decision.objects.get(ticket__ticket_id=result["ticket_id"])
    assert made == 9
    assert decision.outcome == "AUTO_HEAL", decision.reasons
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    assert patterns.is_known_good(ticket.pattern)
    assert record_track_record([agent.host], alice, timezone.now()) == 0
