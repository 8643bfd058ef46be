"""When notices go out, and together with which: a storm becomes one digest.

A notice waits WARDEN_NOTICE_GROUP_WAIT_SECONDS for others of its kind; plan_batches (pure)
groups the waiting ones by kind, and a group on more hosts than
WARDEN_NOTICE_DIGEST_THRESHOLD goes out as one digest, a smaller one as a message each.
For WARDEN_NOTICE_FOLLOW_UP_MINUTES after a digest, its kind's later notices (a storm's
tail) go out as one follow-up digest after the same wait, however few.
L3's reviews wait WARDEN_REVIEW_DIGEST_MINUTES and always go out as one digest.
gather_due turns the groups that are due into NoticeDelivery rows; plans.wake_at has
django-q2 run the sender again when the next group falls due.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from governance.choices import AutonomyLevel
from governance.models import Notice, NoticeDelivery
from governance.notices.plans import REVIEW_KINDS

# Kinds always sent as one digest, after their own wait (gather_due).
ALWAYS_DIGEST = frozenset({REVIEW_KINDS[AutonomyLevel.L3_BOUNDED]})


@dataclass(frozen=True)
class Waiting:
    """A notice not yet gathered into a delivery."""

    notice_id: int
    kind: str
    host: str
    created_at: datetime


@dataclass(frozen=True)
class Batch:
    """One message to send: a single notice, or a digest of a storm."""

    kind: str
    notice_ids: tuple[int, ...]
    digest: bool


def plan_batches(
    waiting: Sequence[Waiting],
    now: datetime,
    wait: timedelta,
    threshold: int,
    *,
    waits: Mapping[str, timedelta] | None = None,
    always_digest: frozenset[str] = frozenset(),
) -> tuple[list[Batch], datetime | None]:
    """Group waiting notices by kind. A kind's group goes out once its oldest notice has
    waited `wait` (or the kind's own in `waits`): as one digest if it spans more than
    `threshold` hosts or its kind is in `always_digest` (the kinds of a storm still
    blowing among them: gather_due), else a message each. Returns the batches due now and
    when the next group falls due (or None)."""
    by_kind: dict[str, list[Waiting]] = {}
    for notice in sorted(waiting, key=lambda n: (n.created_at, n.notice_id)):
        by_kind.setdefault(notice.kind, []).append(notice)
    batches: list[Batch] = []
    next_due: datetime | None = None
    for kind, group in by_kind.items():
        due = group[0].created_at + (waits or {}).get(kind, wait)
        if due > now:
            next_due = due if next_due is None else min(next_due, due)
            continue
        if kind in always_digest or len({notice.host for notice in group}) > threshold:
            batches.append(Batch(kind, tuple(n.notice_id for n in group), digest=True))
        else:
            batches += [Batch(kind, (n.notice_id,), digest=False) for n in group]
    return batches, next_due


def gather_due(now: datetime) -> datetime | None:
    """Turn the notices whose wait is over into deliveries; returns when the next group
    falls due. Locks the waiting notices, so two workers never gather one twice."""
    with transaction.atomic():
        waiting = [
            Waiting(n.pk, n.kind, n.host_name, n.created_at)
            for n in Notice.objects.select_for_update().filter(delivery__isnull=True)
        ]
        if not waiting:
            return None
        batches, next_due = plan_batches(
            waiting,
            now,
            timedelta(seconds=settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS),
            settings.WARDEN_NOTICE_DIGEST_THRESHOLD,
            waits={
                kind: timedelta(minutes=settings.WARDEN_REVIEW_DIGEST_MINUTES)
                for kind in ALWAYS_DIGEST
            },
            always_digest=ALWAYS_DIGEST | storming(now),
        )
        for batch in batches:
            delivery = NoticeDelivery.objects.create(
                kind=batch.kind, digest=batch.digest, created_at=now
            )
            Notice.objects.filter(pk__in=batch.notice_ids, delivery__isnull=True).update(
                delivery=delivery
            )
    return next_due


def storming(now: datetime) -> frozenset[str]:
    """The kinds that went out as a digest in the last WARDEN_NOTICE_FOLLOW_UP_MINUTES: a
    storm's later notices of those kinds follow it as one more digest, however few."""
    since = now - timedelta(minutes=settings.WARDEN_NOTICE_FOLLOW_UP_MINUTES)
    recent = NoticeDelivery.objects.filter(digest=True, created_at__gt=since, created_at__lte=now)
    return frozenset(recent.values_list("kind", flat=True).distinct())
