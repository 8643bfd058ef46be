"""Sending notices: the django-q2 task that gathers what is due and sends what is unfinished.

deliver_due (its dotted path is stored in Schedule rows: keep it here) gathers the notices
whose wait is over (batches.gather_due), then sends each unfinished delivery under a lease,
marking each address and the webhook as it goes. A failure raises NoticeNotSent, so
django-q2 retries, and a retry (or the warden-notices schedule, every minute) sends only
what is left, after a back-off.
"""

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import get_connection
from django.db.models import F, Q
from django.utils import timezone

from config import outbound
from governance.models import DeliveryStatus, NoticeDelivery, NoticeKind, Verdict
from governance.notices.batches import gather_due
from governance.notices.items import brief_item, notice_item
from governance.notices.links import link_url
from governance.notices.messages import DIGEST_LISTED, email_for, slack_message, storm_summary
from governance.notices.plans import wake_at
from governance.notices.recipients import recipients_of

logger = logging.getLogger("warden.notices")

SEND_LEASE = timedelta(seconds=120)  # longer than one delivery's mail and webhook timeouts
RETRY_BACKOFF = timedelta(seconds=30)  # times the attempts so far
WEBHOOK_TIMEOUT_SECONDS = 10
WEBHOOK_ANSWER_LIMIT = 4096  # bytes read of the receiver's answer; only its status counts


class NoticeNotSent(Exception):
    """A delivery failed (mail server or webhook); raised so django-q2 retries the task."""


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST `payload` as JSON (config.outbound: checked addresses, no redirect followed);
    raises NoticeNotSent unless the receiver answers 2xx."""
    try:
        answer = outbound.post(
            url,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json"},
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            limit=WEBHOOK_ANSWER_LIMIT,
        )
    except outbound.NotSent as error:
        raise NoticeNotSent(f"the webhook could not be reached: {error}") from error
    except outbound.MaybeSent as error:
        raise NoticeNotSent(f"the webhook did not answer: {error}") from error
    if answer.redirected:
        raise NoticeNotSent(
            f"the webhook answered HTTP {answer.status} (a redirect to "
            f"{answer.location[:200] or 'nowhere'}): redirects are not followed"
        )
    if not 200 <= answer.status < 300:
        raise NoticeNotSent(f"the webhook answered HTTP {answer.status}")


def send_delivery(delivery: NoticeDelivery, now: datetime) -> list[str]:
    """Send what is left of one claimed delivery, marking each address and the webhook as
    soon as it is sent. Returns what failed (empty when it is all sent)."""
    notices = list(
        delivery.notices.select_related(
            "ticket__host",
            "approval_request__ticket",
            "approval_request__runbook",
            "approval_request__decision__policy",
            "approval_request__decision__sample",
            "execution__runbook",
            "execution__decision",
            "execution__review",
        )
    )
    # A digest shows its first notices whole and the rest one line each (a storm's
    # thousand would otherwise be a thousand full reads and a message nobody reads).
    whole = DIGEST_LISTED if delivery.digest else len(notices)
    items = [
        item
        for i, notice in enumerate(notices)
        if (item := notice_item(notice, now) if i < whole else brief_item(notice, now))
    ]
    if delivery.kind == NoticeKind.APPROVAL_REQUESTED:
        items = [item for item in items if item.pending]  # decided meanwhile: nothing to ask
    if not items:
        return []
    summary = storm_summary(delivery.kind, items, followed(delivery)) if delivery.digest else None
    requests = {n.approval_request_id: n.approval_request for n in notices if n.approval_request}
    problems = []
    emailed = list(delivery.emailed)
    left = [
        (person, told)
        for person, told in recipients_of(delivery.kind, items, requests)
        if person.address not in emailed
    ]
    if left:
        try:
            with get_connection() as connection:
                for person, told in left:
                    email = email_for(person, delivery.kind, told, delivery.digest, now, summary)
                    connection.send_messages([email])
                    emailed.append(person.address)
                    NoticeDelivery.objects.filter(pk=delivery.pk).update(emailed=emailed)
        except Exception as error:  # a mail server down or refusing: retried later
            problems.append(f"email: {error}"[:200])
    url = settings.WARDEN_SLACK_WEBHOOK_URL
    if url and delivery.posted_at is None:
        shared = {
            item.notice_id: {
                verdict: link_url(item.approval_request_id, verdict, None)
                for verdict in Verdict.values
            }
            for item in items
            if item.pending
        }
        try:
            post_webhook(url, slack_message(delivery.kind, items, delivery.digest, shared, summary))
            NoticeDelivery.objects.filter(pk=delivery.pk).update(posted_at=now)
        except NoticeNotSent as error:
            problems.append(f"webhook: {error}"[:200])
    return problems


def followed(delivery: NoticeDelivery) -> datetime | None:
    """When the digest `delivery` follows was made (a storm's tail), or None."""
    window = timedelta(minutes=settings.WARDEN_NOTICE_FOLLOW_UP_MINUTES)
    earlier = NoticeDelivery.objects.filter(
        kind=delivery.kind,
        digest=True,
        created_at__lt=delivery.created_at,
        created_at__gte=delivery.created_at - window,
    ).exclude(pk=delivery.pk)
    return earlier.order_by("-created_at").values_list("created_at", flat=True).first()


def send_unfinished(now: datetime) -> list[str]:
    """Send every unfinished delivery no other worker holds and none waits to retry;
    returns what failed this time."""
    problems = []
    for pk in NoticeDelivery.objects.filter(status=DeliveryStatus.PENDING).values_list(
        "pk", flat=True
    ):
        claimed = (
            NoticeDelivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .update(lease_until=now + SEND_LEASE, attempts=F("attempts") + 1)
        )
        if not claimed:
            continue
        delivery = NoticeDelivery.objects.get(pk=pk)
        failed = send_delivery(delivery, now)
        if not failed:
            NoticeDelivery.objects.filter(pk=pk).update(
                status=DeliveryStatus.SENT, finished_at=now, lease_until=None, last_error=""
            )
            continue
        error = "; ".join(failed)[:500]
        if delivery.attempts >= settings.WARDEN_NOTICE_MAX_ATTEMPTS:
            logger.error(
                "notice delivery %s given up after %s attempts: %s", pk, delivery.attempts, error
            )
            NoticeDelivery.objects.filter(pk=pk).update(
                status=DeliveryStatus.FAILED, finished_at=now, lease_until=None, last_error=error
            )
        else:
            # The lease doubles as the back-off: nobody retries it before then.
            NoticeDelivery.objects.filter(pk=pk).update(
                lease_until=now + RETRY_BACKOFF * delivery.attempts, last_error=error
            )
        problems.append(f"delivery {pk}: {error}")
    return problems


def deliver_due(now: datetime | None = None) -> str:
    """The django-q2 task: gather the notices whose wait is over, send what is unfinished,
    and wake again when the next group falls due. Raises NoticeNotSent if anything failed,
    so django-q2 retries; sending twice is prevented by what each delivery has marked."""
    now = now or timezone.now()
    next_due = gather_due(now)
    problems = send_unfinished(now)
    if next_due is not None:
        wake_at(next_due)
    if problems:
        raise NoticeNotSent("; ".join(problems))
    return "sent"
