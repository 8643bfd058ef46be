"""The outbox in the admin: notices and their deliveries, who was told what, by which channel,
how it went; read-only for everyone; the people's roles may read it. A notice that
went out to nobody says so, with what to fix."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from governance.models import DeliveryStatus, Notice, NoticeDelivery, NoticeKind
from tests.governance.admin_pages import logged_in

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

OUTBOX = reverse("admin:governance_noticedelivery_changelist")
NOTICES = reverse("admin:governance_notice_changelist")


@pytest.fixture(autouse=True)
def notices_at_once(settings):
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 0
    settings.WARDEN_NOTICE_EMAILS = []
    settings.WARDEN_SLACK_WEBHOOK_URL = ""


def firewall_change(agent) -> Notice:
    """A firewall change waits for two approvers: its notice goes out at once."""
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    return Notice.objects.get(ticket__ticket_id=result["ticket_id"])


def page(user: User, url: str, **query: str) -> str:
    answer = logged_in(user).get(url, query)
    assert answer.status_code == 200
    return answer.content.decode()


def listed(user: User, **query: str) -> list[NoticeDelivery]:
    """The deliveries the outbox lists for `query` (a filter or a search)."""
    answer = logged_in(user).get(OUTBOX, query)
    assert answer.status_code == 200
    return list(answer.context["cl"].result_list)


def test_a_notice_nobody_could_be_told_shows_as_such_with_a_hint(agent, dave):
    # nobody who may approve has an email (the demo's accounts had none)
    notice = firewall_change(agent)

    delivery = notice.delivery
    assert (delivery.status, delivery.emailed) == (DeliveryStatus.SENT, [])
    outbox = page(dave, OUTBOX)
    assert "Approval needed" in outbox
    assert "nobody</strong>: went out to nobody" in outbox
    assert "Add an email to the people in the role" in outbox
    assert "Sent to nobody" in outbox
    assert "told: nobody" in page(dave, NOTICES)


def test_who_was_told_what_by_which_channel(agent, alice, bob, carol, dave):
    notice = firewall_change(agent)

    outbox = page(alice, OUTBOX)
    for person in (alice, bob, carol):
        assert person.email in outbox
    assert "went out to nobody" not in outbox
    change = reverse("admin:governance_noticedelivery_change", args=[notice.delivery_id])
    detail = page(dave, change)
    assert notice.host_name in detail and "email" in detail and "Sent" in detail
    # searching by a recipient finds their deliveries, and not others'
    assert listed(dave, q="bob@example.com") == [notice.delivery]
    assert listed(dave, q="nobody-by-this-name@example.com") == []


def test_filters_by_status_and_channel(agent, dave):
    to_nobody = firewall_change(agent).delivery
    failed = NoticeDelivery.objects.create(
        kind=NoticeKind.ACTION_FAILED,
        status=DeliveryStatus.FAILED,
        attempts=5,
        finished_at=timezone.now(),
        last_error="email: [Errno 111] Connection refused",
    )
    emailed = NoticeDelivery.objects.create(
        kind=NoticeKind.ESCALATED,
        status=DeliveryStatus.SENT,
        emailed=["sam@example.com"],
        finished_at=timezone.now(),
    )

    assert listed(dave, status__exact="failed") == [failed]
    assert "Connection refused" in page(dave, OUTBOX, status__exact="failed")
    assert listed(dave, channel="email") == [emailed]
    assert listed(dave, channel="nobody") == [to_nobody]
    assert listed(dave, q="sam@example") == [emailed]


def test_the_peoples_roles_read_it_staff_without_a_role_do_not(agent, alice, bob, dave):
    firewall_change(agent)
    nobody = User.objects.create_user("nemo", "nemo@example.com", is_staff=True)

    for reader in (alice, bob, dave):  # supervisors, approvers, compliance
        assert logged_in(reader).get(OUTBOX).status_code == 200
        assert logged_in(reader).get(NOTICES).status_code == 200
    assert logged_in(nobody).get(OUTBOX).status_code == 403


def test_nobody_adds_changes_or_deletes_a_delivery(agent):
    notice = firewall_change(agent)
    root = User.objects.create_superuser("root", "root@example.com", "pw")
    browser = logged_in(root)
    delivery = notice.delivery
    change = reverse("admin:governance_noticedelivery_change", args=[delivery.pk])

    assert browser.get(reverse("admin:governance_noticedelivery_add")).status_code == 403
    assert b'name="_save"' not in browser.get(change).content  # shown, not a form
    assert browser.post(change, {"status": "pending", "_save": "Save"}).status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
