"""People are told: approval requests, escalations, L2 actions, failures and rollbacks reach
them by email and a Slack-compatible webhook, with the context to act and links that
approve or reject once, for their own person, before they expire.

Mail is Django's locmem backend; the webhook is a real HTTP server on 127.0.0.1, which
the `webhook` fixture allows through WARDEN_OUTBOUND_ALLOWED_NETWORKS (refused by default).
"""

import json
import logging
import re
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core import signing
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import transaction
from django.utils import timezone
from django.utils.html import escape
from django_q.models import Schedule

from governance.approvals.actions import approve_request, reject_request
from governance.models import (
    Approval,
    ApprovalRequest,
    AuditEvent,
    DeliveryStatus,
    Notice,
    NoticeDelivery,
    NoticeKind,
    NoticeLinkUse,
    Policy,
)
from governance.notices.batches import Batch, Waiting, plan_batches
from governance.notices.delivery import NoticeNotSent, deliver_due
from governance.notices.messages import DIGEST_LISTED
from governance.notices.plans import WAKE_SCHEDULE, notice_plans
from remediation.actions import add_host
from tests.conftest import AgentClient

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

BASE = "http://testserver"


class Receiver:
    """A Slack-compatible incoming webhook: records each JSON post, answers the statuses
    queued in `answers` (then 200)."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, dict]] = []
        self.answers: list[int] = []
        self.headers: dict[str, str] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.posts.append((status, json.loads(body)))
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"error")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/warden"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def delivered(self) -> list[dict]:
        return [payload for status, payload in self.posts if status == 200]


@pytest.fixture(autouse=True)
def notices_at_once(settings):
    """Each notice goes out as soon as it commits, unless a test gathers a storm."""
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 0
    settings.WARDEN_NOTICE_BASE_URL = BASE
    settings.WARDEN_NOTICE_EMAILS = []
    settings.WARDEN_SLACK_WEBHOOK_URL = ""


@pytest.fixture
def webhook(settings):
    receiver = Receiver()
    receiver.thread.start()
    settings.WARDEN_SLACK_WEBHOOK_URL = receiver.url
    settings.WARDEN_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # as an operator would
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def firewall_request(agent: AgentClient) -> ApprovalRequest:
    """A firewall change: critical, so it waits for two approvers."""
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    return ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])


def mail_to(outbox: list, user: Any) -> list:
    return [message for message in outbox if message.to == [user.email]]


def link(message: Any, verdict: str) -> str:
    """The path of the approve or reject link in an email's text."""
    [url] = re.findall(rf"^{verdict.capitalize()}: +(\S+)$", message.body, flags=re.M)
    assert url.startswith(f"{BASE}/notices/")
    return url.removeprefix(BASE)


# --- What people are told ------------------------------------------------------------


def test_an_approval_request_emails_each_approver_what_they_need_to_decide(
    agent, mailoutbox, alice, bob, carol, dave
):
    # when a firewall change waits for people
    request = firewall_request(agent)

    # then each person who may approve it gets one email of their own; compliance none
    assert sorted(m.to[0] for m in mailoutbox) == sorted(u.email for u in (alice, bob, carol))
    [message] = mail_to(mailoutbox, bob)
    assert message.subject == (
        f"[Warden] Approval needed: apply-firewall-change on web-01 ({request.ticket.ticket_id})"
    )
    body = message.body
    assert "web-01" in body
    assert "Firewall change requested" in body  # the readings the decision was made on
    assert "Disk 45.0 %" in body
    assert "Runbook: apply-firewall-change" in body
    assert "risk High" in body
    assert "$ warden-runbook nft-apply --file /etc/warden/requested-change.nft" in body
    assert "Approvals: 0 of 2 needed" in body
    for reason in request.decision.reasons:
        assert reason in body
    html = message.alternatives[0][0]
    assert "apply-firewall-change" in html and "Approve…" in html and "Reject…" in html
    # and each person's links are their own
    assert link(message, "approve") != link(mail_to(mailoutbox, carol)[0], "approve")
    assert link(message, "approve") != link(message, "reject")


def test_the_webhook_receives_the_context_and_shared_links(agent, webhook, bob):
    request = firewall_request(agent)

    [payload] = webhook.delivered
    assert "Approval needed" in payload["text"]
    text = payload["text"]
    assert "web-01" in text and request.ticket.ticket_id in text
    assert "apply-firewall-change" in text and "risk *High*" in text
    assert "Firewall change requested" in text
    assert request.decision.reasons[-1] in text
    assert re.search(rf"<{BASE}/notices/\S+\|Approve…>", text)
    assert payload["blocks"][0]["type"] == "header"


def test_extra_addresses_are_told_without_links_of_their_own(agent, mailoutbox, settings, bob):
    settings.WARDEN_NOTICE_EMAILS = ["oncall@example.com"]

    firewall_request(agent)

    [message] = [m for m in mailoutbox if m.to == ["oncall@example.com"]]
    assert "web-01" in message.body
    assert "/notices/" not in message.body  # a list is nobody: no verdict links


# --- Following a link --------------------------------------------------------------


def test_a_link_asks_for_a_login_then_shows_the_confirmation_page(agent, mailoutbox, client, bob):
    request = firewall_request(agent)
    path = link(mail_to(mailoutbox, bob)[0], "approve")

    # logged out: the admin's login page, coming back here after
    page = client.get(path)
    assert page.status_code == 302
    assert page["Location"].startswith("/admin/login/?next=/notices/")

    # logged in: everything needed to decide, and nothing decided yet
    client.force_login(bob)
    page = client.get(path)
    assert page.status_code == 200
    text = page.content.decode()
    assert "web-01" in text and "apply-firewall-change" in text
    assert (
        "High" in text
        and "warden-runbook nft-apply --file /etc/warden/requested-change.nft" in text
    )
    assert "approvals 0 of 2 needed" in text
    assert "requested" in text  # the firewall change in the readings
    assert escape(request.decision.reasons[0]) in text
    assert 'name="note"' in text
    assert not request.approvals.exists()


def test_confirming_approves_through_the_use_case_as_the_person(agent, mailoutbox, client, bob):
    request = firewall_request(agent)
    path = link(mail_to(mailoutbox, bob)[0], "approve")
    client.force_login(bob)

    page = client.post(path, {"note": "change window open"})

    assert page.status_code == 200
    assert "Done: you approved, 1 of 2; more approvals needed." in page.content.decode()
    [approval] = Approval.objects.filter(request=request)
    assert approval.approver == bob and approval.comment == "change window open"
    audited = AuditEvent.objects.get(action="approval.approved")
    assert audited.actor == "user:bob"
    assert audited.data["comment"] == "change window open"


def test_the_last_approval_from_a_link_queues_the_execution(agent, mailoutbox, client, bob, carol):
    request = firewall_request(agent)
    approve_request(request, actor=carol, reason="", now=timezone.now())
    client.force_login(bob)

    with agent.capture(execute=True):
        page = client.post(link(mail_to(mailoutbox, bob)[0], "approve"), {"note": ""})

    assert "approved, 2 of 2; the execution is queued" in page.content.decode()
    [action] = agent.take_actions()
    assert action["action"] == "apply_firewall_change"


def test_a_link_used_twice_does_nothing_the_second_time_and_says_why(
    agent, mailoutbox, client, bob
):
    request = firewall_request(agent)
    path = link(mail_to(mailoutbox, bob)[0], "approve")
    client.force_login(bob)
    assert client.post(path, {"note": "once"}).status_code == 200

    again = client.post(path, {"note": "twice"})

    assert again.status_code == 410
    assert "This link was already used" in again.content.decode()
    assert "Each link works once" in again.content.decode()
    assert request.approvals.count() == 1
    assert client.get(path).status_code == 410


def test_a_channel_link_works_once_for_each_person_who_may_approve(
    agent, webhook, client, bob, carol, dave
):
    # given the approve link a shared channel received (it names nobody)
    request = firewall_request(agent)
    [url] = re.findall(rf"<{BASE}(/notices/\S+)\|Approve…>", webhook.delivered[0]["text"])

    # compliance may not approve: nothing changes
    client.force_login(dave)
    assert client.post(url, {"note": ""}).status_code == 403

    # each approver may use it once
    for person in (bob, carol):
        client.force_login(person)
        assert client.post(url, {"note": f"{person} agrees"}).status_code == 200
    request.refresh_from_db()
    assert request.status == "approved"
    client.force_login(bob)
    again = client.post(url, {"note": "again"})
    assert again.status_code == 410 and "already used" in again.content.decode()
    assert request.approvals.count() == 2


def test_an_expired_link_does_nothing_and_says_why(agent, mailoutbox, client, bob, monkeypatch):
    # given a link signed two hours ago (links work for an hour)
    two_hours_ago = timezone.now().timestamp() - 7200
    with monkeypatch.context() as m:
        m.setattr(signing, "time", SimpleNamespace(time=lambda: two_hours_ago))
        request = firewall_request(agent)
    client.force_login(bob)

    page = client.post(link(mail_to(mailoutbox, bob)[0], "approve"), {"note": "late"})

    assert page.status_code == 410
    assert "This link has expired" in page.content.decode()
    assert not request.approvals.exists()
    assert not NoticeLinkUse.objects.exists()


def test_another_persons_link_does_nothing_and_says_why(agent, mailoutbox, client, bob, carol):
    request = firewall_request(agent)
    bobs = link(mail_to(mailoutbox, bob)[0], "approve")
    client.force_login(carol)

    page = client.post(bobs, {"note": "I am carol"})

    assert page.status_code == 403
    assert "This link was sent to another person" in page.content.decode()
    assert not request.approvals.exists()
    assert not NoticeLinkUse.objects.exists()


def test_a_tampered_link_does_nothing_and_says_why(agent, mailoutbox, client, bob):
    request = firewall_request(agent)
    path = link(mail_to(mailoutbox, bob)[0], "approve")
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    client.force_login(bob)

    page = client.post(tampered, {"note": "forged"})

    assert page.status_code == 400
    assert "not one Warden signed, or it was altered" in page.content.decode()
    assert not request.approvals.exists()


def test_a_link_to_a_request_no_longer_pending_does_nothing_and_says_why(
    agent, mailoutbox, client, bob, carol
):
    request = firewall_request(agent)
    path = link(mail_to(mailoutbox, bob)[0], "approve")
    reject_request(request, actor=carol, reason="not during the sale", now=timezone.now())
    client.force_login(bob)

    page = client.post(path, {"note": "too late"})

    assert page.status_code == 409
    assert "This request is already rejected. Nothing was changed." in page.content.decode()
    request.refresh_from_db()
    assert request.status == "rejected"
    assert request.approvals.count() == 1
    assert not NoticeLinkUse.objects.exists()


def test_a_rejection_from_a_link_needs_a_note(agent, mailoutbox, client, bob):
    request = firewall_request(agent)
    path = link(mail_to(mailoutbox, bob)[0], "reject")
    client.force_login(bob)

    refused = client.post(path, {"note": "  "})

    assert refused.status_code == 400
    assert "A rejection needs a note saying why." in refused.content.decode()
    request.refresh_from_db()
    assert request.status == "pending"
    assert not NoticeLinkUse.objects.exists()

    page = client.post(path, {"note": "the change is not in the ticket"})

    assert page.status_code == 200
    request.refresh_from_db()
    assert request.status == "rejected"
    audited = AuditEvent.objects.get(action="approval.rejected")
    assert audited.actor == "user:bob"
    assert audited.data["comment"] == "the change is not in the ticket"


# --- Storms, retries, rollbacks --------------------------------------------------------


def test_a_storm_of_approval_requests_on_many_hosts_sends_one_digest(
    db, client, approved_model, django_capture_on_commit_callbacks, settings, webhook,
    mailoutbox, bob,
):  # fmt: skip
    # given notices that wait a minute for others of their kind
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 60
    settings.WARDEN_NOTICE_DIGEST_THRESHOLD = 3
    hosts = [f"edge-{n:02d}" for n in range(6)]

    # when six hosts ask for firewall changes at once
    for name in hosts:
        host, key = add_host(name, now=timezone.now())
        firewall_request(AgentClient(client, host, key, django_capture_on_commit_callbacks))

    # then nothing goes out at once, and the scheduler is asked to wake when the wait ends
    assert mailoutbox == [] and webhook.posts == []
    assert Schedule.objects.filter(name=WAKE_SCHEDULE).exists()

    # and when it wakes, one digest each, listing every host with its own links
    deliver_due(timezone.now() + timedelta(seconds=61))
    [message] = mail_to(mailoutbox, bob)
    assert message.subject.startswith(
        "[Warden] Approval needed on 6 hosts (Firewall): edge-00, edge-01, edge-02 and 3 more"
    )
    for name in hosts:
        assert name in message.body
    assert len(re.findall(r"^Approve: ", message.body, flags=re.M)) == 6
    # with what the storm is: how many tickets, where, and where to see them all
    assert "6 tickets on 6 hosts; Firewall (6); INC-" in message.body
    assert f"{BASE}/admin/remediation/ticket/?category__exact=firewall" in message.body
    [payload] = webhook.delivered
    assert all(name in payload["text"] for name in hosts)
    assert "6 tickets on 6 hosts" in payload["text"]
    assert NoticeDelivery.objects.get().digest is True

    # and nothing is sent twice
    deliver_due(timezone.now() + timedelta(seconds=120))
    assert len(mail_to(mailoutbox, bob)) == 1 and len(webhook.delivered) == 1


def test_a_storms_tail_follows_its_digest_as_one_more_digest(
    db, client, approved_model, django_capture_on_commit_callbacks, settings, mailoutbox, bob
):
    # given a storm of firewall requests told as one digest
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 60
    settings.WARDEN_NOTICE_FOLLOW_UP_MINUTES = 10
    for n in range(5):
        host, key = add_host(f"edge-{n:02d}", now=timezone.now())
        firewall_request(AgentClient(client, host, key, django_capture_on_commit_callbacks))
    deliver_due(timezone.now() + timedelta(seconds=61))
    assert len(mail_to(mailoutbox, bob)) == 1

    # when two more hosts join the storm after the digest went out
    for n in range(5, 7):
        host, key = add_host(f"edge-{n:02d}", now=timezone.now())
        firewall_request(AgentClient(client, host, key, django_capture_on_commit_callbacks))
    deliver_due(timezone.now() + timedelta(seconds=122))

    # then people get one follow-up digest of the two, not a message each
    _, follow_up = mail_to(mailoutbox, bob)
    assert follow_up.subject.startswith(
        "[Warden] Approval needed on 2 more hosts (Firewall, follow-up): edge-05, edge-06"
    )
    assert "More of the storm told at" in follow_up.body
    assert list(NoticeDelivery.objects.order_by("created_at").values_list("digest", flat=True)) == [
        True,
        True,
    ]

    # and once the storm is over, a lone notice is a message of its own again
    settings.WARDEN_NOTICE_FOLLOW_UP_MINUTES = 0
    host, key = add_host("edge-99", now=timezone.now())
    firewall_request(AgentClient(client, host, key, django_capture_on_commit_callbacks))
    deliver_due(timezone.now() + timedelta(seconds=183))
    assert mail_to(mailoutbox, bob)[-1].subject.startswith("[Warden] Approval needed: ")


def test_a_big_storm_shows_its_first_notices_whole_and_the_rest_one_line_each(
    db, client, approved_model, django_capture_on_commit_callbacks, settings, mailoutbox, bob
):
    # given a storm past what a digest shows whole
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 60
    count = DIGEST_LISTED + 5
    for n in range(count):
        host, key = add_host(f"edge-{n:02d}", now=timezone.now())
        firewall_request(AgentClient(client, host, key, django_capture_on_commit_callbacks))

    # when it goes out
    deliver_due(timezone.now() + timedelta(seconds=61))

    # then one message tells all of them: the first whole, with their links, the rest a line
    [message] = mail_to(mailoutbox, bob)
    assert f"{count} tickets on {count} hosts" in message.body
    assert len(re.findall(r"^== Approval needed: ", message.body, flags=re.M)) == DIGEST_LISTED
    assert len(re.findall(r"^Approve: ", message.body, flags=re.M)) == DIGEST_LISTED
    assert len(re.findall(r"^- INC-\d+ on edge-\d+: ", message.body, flags=re.M)) == 5
    assert f"{BASE}/admin/governance/approvalrequest/?status__exact=pending" in message.body


def test_a_failing_webhook_raises_so_the_task_is_retried_and_a_retry_sends_once(
    agent, webhook, mailoutbox, bob, carol, caplog
):
    # given a webhook that fails twice
    webhook.answers = [500, 500]

    # when a request is told: the mail goes, the webhook fails and the task raised (logged
    # after the commit here; django-q2 runs tasks inline in tests), the request stands
    with caplog.at_level(logging.ERROR):
        request = firewall_request(agent)
    assert request.status == "pending"
    assert "the webhook answered HTTP 500" in caplog.text
    assert len(mailoutbox) == 2
    assert [status for status, _ in webhook.posts] == [500]
    delivery = NoticeDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and "HTTP 500" in delivery.last_error

    # then nothing is tried again before the back-off, and a retry after it raises again
    assert deliver_due(timezone.now()) == "sent"
    assert len(webhook.posts) == 1
    with pytest.raises(NoticeNotSent, match="HTTP 500"):
        deliver_due(timezone.now() + timedelta(minutes=2))

    # and a later retry posts once and mails nobody again
    deliver_due(timezone.now() + timedelta(minutes=10))
    assert len(webhook.delivered) == 1
    assert len(mailoutbox) == 2
    deliver_due(timezone.now() + timedelta(minutes=20))
    assert len(webhook.posts) == 4 - 1  # two failures and one success
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 3


def test_the_webhook_on_an_inside_address_is_refused_by_default_and_nothing_is_posted(
    agent, webhook, mailoutbox, bob, carol, settings, caplog
):
    settings.WARDEN_OUTBOUND_ALLOWED_NETWORKS = []  # the default

    with caplog.at_level(logging.ERROR):
        firewall_request(agent)

    assert webhook.posts == []
    assert len(mailoutbox) == 2  # the mail still goes
    delivery = NoticeDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.posted_at is None
    assert "127.0.0.1 is loopback" in delivery.last_error
    assert "WARDEN_OUTBOUND_ALLOWED_NETWORKS does not allow it" in delivery.last_error


def test_a_redirect_from_the_webhook_is_not_followed(agent, webhook, bob, carol, caplog):
    elsewhere = Receiver()
    elsewhere.thread.start()
    webhook.answers = [302]
    webhook.headers = {"Location": elsewhere.url}
    try:
        with caplog.at_level(logging.ERROR):
            firewall_request(agent)
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()

    assert [status for status, _ in webhook.posts] == [302]
    assert elsewhere.posts == []
    delivery = NoticeDelivery.objects.get()
    assert delivery.posted_at is None and "redirects are not followed" in delivery.last_error


@pytest.mark.parametrize(
    ("url", "production", "problem"),
    [
        ("https://user:pw@hooks.example.com/services/T", False, "credentials"),
        ("http://hooks.example.com/services/T", True, "https://"),
    ],
)
def test_a_webhook_url_warden_would_refuse_stops_it_at_start_up(settings, url, production, problem):
    settings.PRODUCTION = production
    settings.WARDEN_SLACK_WEBHOOK_URL = url

    with pytest.raises(SystemCheckError, match=problem) as refused:
        call_command("check")

    assert "warden.E002" in str(refused.value)


def test_nothing_is_told_when_the_change_rolls_back(agent, mailoutbox, bob):
    request = firewall_request(agent)
    mailoutbox.clear()
    notices = Notice.objects.count()

    with agent.capture(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        reject_request(request, actor=bob, reason="no", now=timezone.now())
        raise RuntimeError("the request failed after the rejection")

    assert Notice.objects.count() == notices
    assert mailoutbox == []
    request.refresh_from_db()
    assert request.status == "pending"


def test_an_escalation_tells_the_supervisors(agent, mailoutbox, alice, bob, carol):
    request = firewall_request(agent)
    mailoutbox.clear()

    with agent.capture(execute=True):
        reject_request(request, actor=carol, reason="not during the sale", now=timezone.now())

    [message] = mailoutbox
    assert message.to == [alice.email]  # supervisors; approvers only approve
    assert message.subject.startswith("[Warden] Escalated to people: apply-firewall-change")
    assert "carol rejected apply-firewall-change" in message.body
    assert "/notices/" not in message.body


def test_an_l2_action_tells_the_supervisors_and_an_l3_action_nobody(agent, mailoutbox, alice):
    # L3 (the disk policy's default): it acts, and a supervisor can override; nobody is told
    agent.post_metrics(agent.sample("disk"))
    assert mailoutbox == []

    # at L2 it acts and a person is told
    policy = Policy.objects.get(category="memory", enabled=True)
    policy.autonomy_level = 2
    policy.save()
    [result] = agent.post_metrics(agent.sample("memory")).json()["results"]

    [message] = mailoutbox
    assert message.to == [alice.email]
    assert message.subject.startswith("[Warden] Acted at L2 (people notified): ")
    assert result["ticket_id"] in message.subject
    assert "Memory 97.0 %" in message.body
    assert "queued for web-01" in message.body
    assert "L2 (conditional: acts, people are notified)" in message.body  # a reason


def test_a_failed_verification_and_its_rollback_are_told(agent, mailoutbox, settings, alice):
    # given a disk fix the agent says worked
    settings.WARDEN_VERIFY_SAMPLES = 2
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    agent.report(action)
    assert mailoutbox == []

    # when fresh metrics keep showing the problem: one notice, with the rollback and the
    # ticket left partially remediated for people
    agent.post_metrics([agent.sample("disk"), agent.sample("disk")])
    [failed] = mailoutbox
    assert failed.subject.startswith("[Warden] Verification failed: ")
    assert "verification failed: 2 fresh samples still show it" in failed.body
    assert "rolling back with" in failed.body and "partially remediated" in failed.body

    # and when the rollback is done, that is told too
    [rollback] = agent.take_actions()
    agent.report(rollback)
    assert [m.subject.split(":")[0] for m in mailoutbox] == [
        "[Warden] Verification failed",
        "[Warden] Rolled back",
    ]
    assert Notice.objects.filter(kind=NoticeKind.ROLLED_BACK).count() == 1


# --- The rules, as plain functions ---------------------------------------------------


def event(sequence: int, action: str, ticket: str = "INC-1", summary: str = "", **data: Any):
    kinds = {"approval": "ApprovalRequest", "ticket": "Ticket", "execution": "Execution"}
    return AuditEvent(
        sequence=sequence,
        action=action,
        object_type=kinds.get(action.split(".")[0], "Decision"),
        object_id=str(sequence),
        ticket_id=ticket,
        summary=summary or action,
        data=data,
    )


def test_one_transaction_tells_one_notice_per_ticket_of_its_most_pressing_kind():
    events = [
        event(1, "execution.failed", summary="verification failed: still full"),
        event(2, "execution.rollback_pending", summary="rolling back"),
        event(3, "ticket.escalated", summary="INC-1 escalated"),
        event(4, "ticket.opened", ticket="INC-2"),
        event(5, "execution.queued", ticket="INC-2", idempotency_key="decision:9"),
        event(6, "ticket.escalated", ticket="INC-3"),
    ]

    plans = notice_plans(events, acted_at_l2={5})

    assert [(p.ticket_id, p.kind, p.sequence) for p in plans] == [
        ("INC-1", NoticeKind.VERIFICATION_FAILED, 1),
        ("INC-2", NoticeKind.L2_ACTION, 5),
        ("INC-3", NoticeKind.ESCALATED, 6),
    ]
    assert plans[0].lines == ("verification failed: still full", "rolling back", "INC-1 escalated")
    assert notice_plans(events[3:5], acted_at_l2=set()) == []  # at L3 nobody is told


def test_a_group_goes_out_after_its_wait_as_a_digest_past_the_threshold():
    now = timezone.now()
    wait = timedelta(seconds=30)

    def waiting(n: int, kind: str = "approval_requested", age: int = 40, host: str = ""):
        return Waiting(n, kind, host or f"web-{n}", now - timedelta(seconds=age))

    few = [waiting(1), waiting(2), waiting(3, age=5)]
    assert plan_batches(few, now, wait, threshold=3) == (
        [Batch("approval_requested", (n,), False) for n in (1, 2, 3)],
        None,
    )
    storm = [waiting(n) for n in range(1, 5)]
    assert plan_batches(storm, now, wait, threshold=3) == (
        [Batch("approval_requested", (1, 2, 3, 4), True)],
        None,
    )
    # the same host four times is no storm
    same = [waiting(n, host="web-1") for n in range(1, 5)]
    assert all(not batch.digest for batch in plan_batches(same, now, wait, threshold=3)[0])
    # a group still waiting says when it falls due
    young = [waiting(1, kind="escalated", age=10)]
    assert plan_batches(young, now, wait, threshold=3) == ([], now + timedelta(seconds=20))


# --- Text from outside reaches Slack as text ---------------------------------------------

FORGED = "<!channel> disk full: <http://evil.example/approve|Approve> & <@U024BE7LH>"


def test_alert_text_reaches_slack_as_text_never_a_mention_or_a_link(db, api, webhook):
    # the finding: an alert's summary arrived in Slack unescaped, pinging the channel with a
    # fake "Approve" link
    add_host("web-01", now=timezone.now())
    service = User.objects.create_user("alertmanager")
    service.groups.add(Group.objects.get(name="alert senders"))
    alert = {
        "status": "firing",
        "labels": {"alertname": "HostOutOfDiskSpace", "instance": "web-01:9100"},
        "annotations": {"summary": FORGED},
        "startsAt": "2026-12-02T01:00:00Z",
        "fingerprint": "5ac4de11",
    }
    answer = api(service).post("/api/v1/alerts/alertmanager", {"version": "4", "alerts": [alert]})
    assert answer.status_code == 200, answer.content

    [payload] = webhook.delivered
    text = payload["text"]
    sections = [block["text"]["text"] for block in payload["blocks"] if block["type"] == "section"]
    for message in [text, *sections]:
        assert "&lt;!channel&gt; disk full: &lt;http://evil.example/approve|Approve&gt;" in message
        assert "&amp; &lt;@U024BE7LH&gt;" in message
        assert "<!channel>" not in message and "<http://evil" not in message
        # the only links are Warden's own
        assert all(link.startswith(BASE) for link in re.findall(r"<([^|>]+)\|", message))
    # and Slack neither links a bare address nor parses a name in them
    assert all(block["text"]["verbatim"] for block in payload["blocks"][1:])
