"""People review what Warden did by itself: every automatic action at L2 or L3 that ends is
told (one notice each at L2, a digest at L3) and gets a review a person acknowledges or
flags; a flag is negative feedback on its pattern; overdue reviews and escalated tickets
show wherever people look for what needs them (the console and the admin's home page).

Fixes are driven through the product's own flow: the agent's API, its reports, fresh
metrics. Mail is Django's locmem backend.
"""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from feedback.models import Feedback, Pattern, PostActionReview, ReviewStatus
from governance.approvals.actions import approve_request
from governance.console.panels import fleet_state
from governance.models import (
    ApprovalRequest,
    AuditEvent,
    Notice,
    NoticeDelivery,
    NoticeKind,
    PatternAutonomy,
    Policy,
)
from governance.notices.batches import Batch, Waiting, plan_batches
from governance.notices.delivery import deliver_due
from governance.policies.actions import save_policy
from governance.promotions.actions import ReviewError, acknowledge_review, flag_review
from governance.promotions.reviews import open_review
from remediation.actions import cancel_execution
from remediation.models import Execution, Ticket
from tests.conftest import AgentClient

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

BASE = "http://testserver"


@pytest.fixture(autouse=True)
def notices_at_once(settings):
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 0
    settings.WARDEN_REVIEW_DIGEST_MINUTES = 60
    settings.WARDEN_REVIEW_DUE_HOURS = 24
    settings.WARDEN_NOTICE_BASE_URL = BASE
    settings.WARDEN_NOTICE_EMAILS = []
    settings.WARDEN_SLACK_WEBHOOK_URL = ""


def set_level(category: str, level: int) -> Policy:
    policy = Policy.objects.get(category=category, enabled=True)
    policy.autonomy_level = level
    policy.requires_approval = level < 2
    save_policy(policy, actor=None, reason=f"test: {category} at L{level}", now=timezone.now())
    return policy


def heal(agent: AgentClient, problem: str = "disk") -> Ticket:
    """A problem Warden fixes by itself, verified by fresh metrics."""
    [result] = agent.post_metrics(agent.sample(problem)).json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    [action] = agent.take_actions()
    assert agent.report(action, ok=True).status_code == 200
    agent.post_metrics(agent.sample())
    return Ticket.objects.get(ticket_id=result["ticket_id"])


def review_of(ticket: Ticket) -> PostActionReview:
    return PostActionReview.objects.select_related("execution").get(execution__ticket=ticket)


def review_path(review: PostActionReview) -> str:
    return f"/admin/feedback/postactionreview/{review.pk}/change/"


def overdue(review: PostActionReview, hours: int = 2) -> PostActionReview:
    """The review as it stands once its due time has passed (a day went by)."""
    PostActionReview.objects.filter(pk=review.pk).update(
        due_at=timezone.now() - timedelta(hours=hours)
    )
    review.refresh_from_db()
    return review


def to(outbox: list, user: Any) -> list:
    return [message for message in outbox if message.to == [user.email]]


def reviews_told(outbox: list, user: Any, kind: NoticeKind) -> list:
    """The messages `user` got of what Warden did by itself (`kind`)."""
    return [m for m in to(outbox, user) if m.subject.startswith(f"[Warden] {kind.label}")]


# --- Opened, and told -----------------------------------------------------------------


def test_an_automatic_l2_fix_opens_a_review_and_tells_each_reviewer_at_once(
    agent, mailoutbox, alice, bob, dave
):
    # given the memory policy at L2: Warden acts, people are told
    set_level("memory", 2)

    # when Warden fixes a memory leak by itself and fresh metrics verify it
    before = timezone.now()
    ticket = heal(agent, "memory")

    # then one review is open, due a day later, of what it did at L2
    review = review_of(ticket)
    assert (review.status, review.autonomy_level, review.outcome) == ("open", 2, "succeeded")
    assert review.execution.approval_request_id is None
    due = review.due_at - before
    assert timedelta(hours=24) <= due < timedelta(hours=24, minutes=1)
    opened = AuditEvent.objects.get(action="review.opened")
    assert opened.ticket_id == ticket.ticket_id
    assert opened.summary.startswith(f"Warden ran {review.execution.runbook.name} on web-01")
    assert "by itself at L2 (succeeded): a person reviews it by" in opened.summary

    # and each person who may review hears of it in a message of its own, with the link
    notice = Notice.objects.get(kind=NoticeKind.L2_REVIEW)
    assert notice.delivery.digest is False
    for person in (alice, bob):
        [message] = reviews_told(mailoutbox, person, NoticeKind.L2_REVIEW)
        assert message.subject == (
            f"[Warden] {NoticeKind.L2_REVIEW.label}: {review.execution.runbook.name} on web-01 "
            f"({ticket.ticket_id})"
        )
        assert "verified: web-01 healthy for memory" in message.body  # what happened
        assert f"Review (acknowledge or flag): {BASE}{review_path(review)}" in message.body
    assert not reviews_told(mailoutbox, dave, NoticeKind.L2_REVIEW)  # compliance views only


def test_l3_fixes_go_out_as_one_digest_after_the_digest_wait(agent, other_agent, mailoutbox, alice):
    # given the disk policy at L3 (its default): Warden acts within limits, nobody is asked
    assert Policy.objects.get(category="disk", enabled=True).autonomy_level == 3

    # when two hosts' disks are cleaned by Warden alone
    tickets = [heal(agent), heal(other_agent)]

    # then both are to review, and nobody is told yet: the digest gathers them
    reviews = [review_of(ticket) for ticket in tickets]
    assert [(r.autonomy_level, r.status) for r in reviews] == [(3, "open"), (3, "open")]
    assert not reviews_told(mailoutbox, alice, NoticeKind.L3_REVIEW)

    # and when the digest's hour is over, one message lists both, each with its review
    deliver_due(timezone.now() + timedelta(minutes=61))
    [digest] = reviews_told(mailoutbox, alice, NoticeKind.L3_REVIEW)
    assert digest.subject == (
        f"[Warden] {NoticeKind.L3_REVIEW.label} on 2 hosts (Disk): web-01, web-02"
    )
    assert "What Warden did by itself (2): review each" in digest.body
    for review in reviews:
        assert f"{BASE}{review_path(review)}" in digest.body
    delivery = NoticeDelivery.objects.get(kind=NoticeKind.L3_REVIEW)
    assert delivery.digest is True  # two hosts are no storm: L3 is a digest all the same
    assert delivery.notices.count() == 2


def test_l3_reviews_wait_their_own_time_and_go_as_a_digest_even_from_one_host():
    now = timezone.now()
    waiting = [
        Waiting(1, "l3_review", "web-01", now - timedelta(minutes=30)),
        Waiting(2, "l3_review", "web-01", now - timedelta(minutes=5)),
        Waiting(3, "escalated", "web-01", now - timedelta(minutes=30)),
    ]
    rules = {"waits": {"l3_review": timedelta(hours=1)}, "always_digest": frozenset({"l3_review"})}

    # the escalation goes after the common wait; the review digest waits its hour
    batches, next_due = plan_batches(waiting, now, timedelta(seconds=30), 3, **rules)
    assert batches == [Batch("escalated", (3,), digest=False)]
    assert next_due == now + timedelta(minutes=30)
    # and then goes as one digest of both, though one host is no storm
    later = now + timedelta(minutes=31)
    assert plan_batches(waiting[:2], later, timedelta(seconds=30), 3, **rules) == (
        [Batch("l3_review", (1, 2), digest=True)],
        None,
    )


def test_a_failed_fix_is_reviewed_once_it_has_ended_and_its_notice_links_the_review(
    agent, mailoutbox, alice
):
    # when Warden's disk fix fails on the host
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [action] = agent.take_actions()
    agent.report(action, ok=False, output="disk still full")

    # then the failure is told at once (not held for L3's digest); nothing to review while
    # its rollback is under way
    assert any("Action failed" in m.subject for m in to(mailoutbox, alice))
    assert not PostActionReview.objects.exists()

    # and when the rollback is done, one review of how it ended, linked from that notice
    [rollback] = agent.take_actions()
    agent.report(rollback, ok=True)
    review = PostActionReview.objects.get(execution__ticket__ticket_id=result["ticket_id"])
    assert (review.outcome, review.autonomy_level) == ("rolled_back", 3)
    rolled_back = next(m for m in to(mailoutbox, alice) if "Rolled back" in m.subject)
    assert f"Review (acknowledge or flag): {BASE}{review_path(review)}" in rolled_back.body
    # opened once: a second call where it ended opens nothing
    with transaction.atomic():
        assert open_review(review.execution, timezone.now()) == []
    assert AuditEvent.objects.filter(action="review.opened").count() == 1


def test_what_people_approved_is_not_reviewed_again(agent, bob, carol):
    # given the disk policy at L1: a person approves each action before it runs
    set_level("disk", 1)
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    for person in (bob, carol)[: request.required_approvals]:
        with agent.capture(execute=True):
            approve_request(request, actor=person, reason="ok", now=timezone.now())

    # when it runs and is verified
    [action] = agent.take_actions()
    agent.report(action, ok=True)
    agent.post_metrics(agent.sample())

    # then nothing is left to review: people decided before it ran
    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "succeeded"
    assert not PostActionReview.objects.exists()
    with transaction.atomic():
        assert open_review(execution, timezone.now()) == []


# --- Acknowledged or flagged -------------------------------------------------------------


def test_acknowledging_needs_the_permission_and_is_made_once(agent, alice, bob, dave):
    review = review_of(heal(agent))

    # compliance watches but does not review; nobody reviews anonymously
    with pytest.raises(PermissionDenied, match="dave may not review"):
        acknowledge_review(review, actor=dave, reason="", now=timezone.now())
    with pytest.raises(PermissionDenied, match="a review is a person's"):
        acknowledge_review(review, actor=None, reason="", now=timezone.now())

    # an approver acknowledges it, with a note
    acknowledge_review(review, actor=bob, reason="looked at the output: fine", now=timezone.now())
    review.refresh_from_db()
    assert (review.status, review.reviewed_by, review.note) == (
        "acknowledged",
        bob,
        "looked at the output: fine",
    )
    audited = AuditEvent.objects.get(action="review.acknowledged")
    assert audited.actor == "user:bob"
    assert audited.summary.endswith(": looked at the output: fine")
    assert audited.data["overdue"] is False

    # and a second verdict, either way, is refused saying who made the first
    with pytest.raises(ReviewError, match="already acknowledged by bob") as refused:
        acknowledge_review(review, actor=alice, reason="", now=timezone.now())
    assert refused.value.code == "already_reviewed"
    with pytest.raises(ReviewError, match="already acknowledged by bob"):
        flag_review(review, actor=alice, reason="no", now=timezone.now())
    assert not Feedback.objects.exists()


def test_a_flag_needs_a_reason_and_is_negative_feedback_on_the_pattern(agent, alice):
    review = review_of(heal(agent))
    pattern = review.execution.ticket.pattern
    before = (pattern.negative_count, pattern.positive_count)

    # a flag without a reason is refused, and nothing changes
    with pytest.raises(ValidationError, match="Say why"):
        flag_review(review, actor=alice, reason="   ", now=timezone.now())
    review.refresh_from_db()
    assert review.status == "open" and not Feedback.objects.exists()

    # with one, it is the ticket's negative feedback in the supervisor's name
    flag_review(review, actor=alice, reason="it deleted logs we needed", now=timezone.now())
    review.refresh_from_db()
    assert (review.status, review.reviewed_by, review.note) == (
        "flagged",
        alice,
        "it deleted logs we needed",
    )
    feedback = review.feedback
    assert (feedback.ticket, feedback.submitted_by, feedback.feedback_type) == (
        review.execution.ticket,
        alice,
        "negative",
    )
    assert "it deleted logs we needed" in feedback.comment
    # counted on the pattern's statistics, like feedback given any other way
    pattern = Pattern.objects.get(pk=pattern.pk)
    assert (pattern.negative_count, pattern.positive_count) == (before[0] + 1, before[1])
    actions = list(
        AuditEvent.objects.filter(ticket_id=feedback.ticket.ticket_id)
        .order_by("sequence")
        .values_list("action", "actor")
    )
    assert actions[-2:] == [("review.flagged", "user:alice"), ("feedback.given", "user:alice")]


def test_a_flag_below_the_policys_feedback_minimum_lowers_it_to_l1_at_once(agent, alice):
    ticket = heal(agent)
    policy = Policy.objects.get(category="disk", enabled=True)
    policy.min_positive_feedback_rate = 0.8
    save_policy(policy, actor=alice, reason="we want reviewed automation liked", now=timezone.now())

    with agent.capture(execute=True):
        flag_review(review_of(ticket), actor=alice, reason="wrong host", now=timezone.now())

    policy.refresh_from_db()
    assert policy.autonomy_level == 1
    assert PatternAutonomy.objects.get(pattern=ticket.pattern).autonomy_level == 1
    assert AuditEvent.objects.filter(action="policy.demoted", ticket_id=ticket.ticket_id).exists()


def test_a_review_is_never_deleted_and_a_made_one_names_its_reviewer(agent, alice):
    review = review_of(heal(agent))

    with pytest.raises(DatabaseError, match="never deleted"), transaction.atomic():
        PostActionReview.objects.filter(pk=review.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        PostActionReview.objects.filter(pk=review.pk).update(status=ReviewStatus.ACKNOWLEDGED)
    with pytest.raises(IntegrityError), transaction.atomic():
        PostActionReview.objects.filter(pk=review.pk).update(
            status=ReviewStatus.FLAGGED, reviewed_by=alice, reviewed_at=timezone.now()
        )  # a flag without a reason and its feedback
    assert PostActionReview.objects.get(pk=review.pk).status == "open"


# --- In the admin ----------------------------------------------------------------------


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_flags_only_with_a_reason_and_acknowledges_with_a_note(
    agent, other_agent, bob, dave
):
    flagged, acknowledged = review_of(heal(agent)), review_of(heal(other_agent))
    changelist = "/admin/feedback/postactionreview/"
    page = signed_in(bob)

    # the review's page says what Warden did and why, and offers both verdicts
    html = page.get(review_path(flagged)).content.decode()
    assert re.search(r"Due in 23\shours", html)  # timeuntil's non-breaking space
    assert "Acknowledge…" in html and "Flag…" in html
    assert "What it ran, and its output" in html

    # a flag asks why, and without a reason changes nothing
    ask = {"action": "flag_action", "_selected_action": [flagged.pk]}
    html = page.post(changelist, ask).content.decode()
    assert "Why is it wrong? (required" in html
    html = page.post(changelist, {**ask, "confirmed": "yes", "note": " "}).content.decode()
    assert "Say why you flag it" in html
    flagged.refresh_from_db()
    assert flagged.status == "open"
    page.post(changelist, {**ask, "confirmed": "yes", "note": "restarted the wrong unit"})
    flagged.refresh_from_db()
    assert (flagged.status, flagged.note) == ("flagged", "restarted the wrong unit")

    # acknowledging takes an optional note
    page.post(
        changelist,
        {"action": "acknowledge_action", "_selected_action": [acknowledged.pk], "confirmed": "yes"},
    )
    acknowledged.refresh_from_db()
    assert (acknowledged.status, acknowledged.reviewed_by) == ("acknowledged", bob)

    # compliance reads the list but is offered no verdicts, and cannot post one
    watcher = signed_in(dave)
    html = watcher.get(changelist).content.decode()
    assert "flag_action" not in html and "acknowledge_action" not in html
    fresh = review_of(heal(agent, "memory"))
    watcher.post(
        changelist,
        {"action": "acknowledge_action", "_selected_action": [fresh.pk], "confirmed": "yes"},
    )
    fresh.refresh_from_db()
    assert fresh.status == "open"


def test_the_review_list_puts_the_longest_overdue_first(agent, other_agent, alice):
    later, first = review_of(heal(agent)), review_of(heal(other_agent))
    overdue(first, hours=5)
    overdue(later, hours=1)
    acknowledge_review(review_of(heal(agent, "memory")), actor=alice, now=timezone.now(), reason="")

    html = signed_in(alice).get("/admin/feedback/postactionreview/").content.decode()
    rows = re.findall(r"/admin/feedback/postactionreview/(\d+)/change/", html)
    assert [int(pk) for pk in dict.fromkeys(rows)][:2] == [first.pk, later.pk]
    only_overdue = signed_in(alice).get("/admin/feedback/postactionreview/?overdue=yes")
    assert only_overdue.context["cl"].result_count == 2


def test_the_tickets_story_links_to_its_review(agent, alice):
    review = review_of(heal(agent))
    ticket = review.execution.ticket
    html = signed_in(alice).get(f"/admin/remediation/ticket/{ticket.pk}/change/").content.decode()
    assert f'href="{review_path(review)}"' in html
    assert "review open (Warden acted at L3)" in html


# --- Where people look for what needs them ------------------------------------------------


def test_overdue_reviews_show_on_the_console_and_the_home_page(agent, alice):
    review = review_of(heal(agent))
    state = fleet_state(timezone.now())
    assert (state.reviews_open, state.reviews_overdue, state.level) == (1, 0, "running")

    # a day later, nobody has looked
    overdue(review)
    state = fleet_state(timezone.now())
    assert (state.reviews_overdue, state.level) == (1, "attention")
    assert state.overdue == [review]

    page = signed_in(alice)
    console = page.get("/console/panels").content.decode()
    assert "1 review overdue" in console
    assert 'href="/admin/feedback/postactionreview/?overdue=yes"' in console
    assert f'<tr data-review="{review.pk}">' in console
    assert f'href="{review_path(review)}">Review…</a>' in console
    home = page.get("/admin/").content.decode()
    assert ">Reviews overdue</a></th>" in home
    assert "<strong>1</strong> of what Warden did by itself" in home
    assert f'<li><a href="{review_path(review)}">{review.execution.ticket.ticket_id}: ' in home

    # and once acknowledged, it leaves both
    acknowledge_review(review, actor=alice, reason="late, but fine", now=timezone.now())
    assert fleet_state(timezone.now()).reviews_overdue == 0
    assert f'data-review="{review.pk}"' not in page.get("/console/panels").content.decode()


def test_a_cancelled_critical_change_escalated_to_people_is_counted_where_they_look(
    agent, alice, bob, carol
):
    # given a firewall change two people approved, queued to run
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    for person in (bob, carol):
        with agent.capture(execute=True):
            approve_request(request, actor=person, reason="ok", now=timezone.now())
    assert fleet_state(timezone.now()).waiting == 0

    # when a supervisor cancels it: the ticket goes to people
    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    cancel_execution(execution, actor=alice, reason="change freeze", now=timezone.now())
    ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
    assert ticket.status == "escalated"

    # then the banner and the home page count it, and lead to it
    state = fleet_state(timezone.now())
    assert (state.escalated, state.level) == (1, "attention")
    assert state.escalated_tickets == [ticket]
    page = signed_in(alice)
    console = page.get("/console/panels").content.decode()
    assert "<strong>1 escalated to people</strong>" in console
    assert 'href="/admin/remediation/ticket/?status__exact=escalated"' in console
    home = page.get("/admin/").content.decode()
    assert ">Escalated to people</a></th>" in home
    assert f"{ticket.ticket_id} on web-01</a>" in home
