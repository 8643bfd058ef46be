"""The tamper-evident audit log: events chained by HMAC-SHA256, appended once per transaction.

Every state change writes its events in the same transaction as the change, so
the log is also the outbox the live console reads (governance/console/live.py).

Three things make tampering show:
- each link is an HMAC keyed with WARDEN_AUDIT_KEY, which lives outside the
  database: a writer of the database cannot compute a link that verifies, so an
  edited, inserted or appended row, or a re-chained tail, fails verification;
- the chain head (sequence and hash) is verified too, so rows deleted from the
  tail show; and it is published where a database writer cannot rewrite it (a log
  line at every checkpoint, the `warden_audit_head_sequence` gauge), so a tail cut
  together with its head shows against that outside copy (verify_audit --expect);
- the database refuses UPDATE, DELETE and TRUNCATE of the log (governance
  migration 0008's triggers).
"""

import contextlib
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from governance.audit.subscribers import subscribers
from governance.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
# An audit record's fields, defined once: what the chain's HMAC covers (in this order in the
# exports), then the two links. The console, the API and the exports show the same record.
CONTENT_FIELDS = (
    "sequence",
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "ticket_id",
    "summary",
    "data",
)
LINK_FIELDS = ("prev_hash", "hash")
RECORD_FIELDS = CONTENT_FIELDS + LINK_FIELDS
logger = logging.getLogger("warden.audit")


@dataclass(frozen=True)
class PendingEvent:
    """An audit event not yet chained: collected during a use case, appended at its end."""

    actor: str
    action: str
    object_type: str
    object_id: str
    summary: str
    ticket_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def event(
    actor: str,
    action: str,
    obj: Any,
    summary: str,
    *,
    ticket_id: str = "",
    data: dict[str, Any] | None = None,
) -> PendingEvent:
    """Build an event about a model instance (its class name and pk name the object)."""
    return PendingEvent(
        actor=actor,
        action=action,
        object_type=type(obj).__name__,
        object_id=str(obj.pk),
        summary=summary[:500],
        ticket_id=ticket_id,
        data=json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder)),
    )


def user_actor(user: Any) -> str:
    return f"user:{user.get_username()}" if user is not None else "system"


def chain_hash(prev_hash: str, row: AuditEvent, key: str | None = None) -> str:
    """The link of one event: HMAC of the previous link and its content, canonically encoded."""
    content = event_content(row)
    secret = (key if key is not None else settings.WARDEN_AUDIT_KEY).encode()
    return hmac.new(secret, (prev_hash + content).encode(), hashlib.sha256).hexdigest()


def event_record(row: AuditEvent, fields: Sequence[str] = CONTENT_FIELDS) -> dict[str, Any]:
    """The record of one event (its content by default), created_at as ISO 8601 text."""
    record = {name: getattr(row, name) for name in fields}
    record["created_at"] = row.created_at.isoformat()
    return record


def event_content(row: AuditEvent) -> str:
    """The canonical text the chain's HMAC covers."""
    return json.dumps(
        event_record(row),
        sort_keys=True,
        separators=(",", ":"),
        cls=DjangoJSONEncoder,
    )


def append_events(events: Sequence[PendingEvent]) -> list[AuditEvent]:
    """Chain `events` onto the log and return the stored rows.

    Must run inside the transaction that made the changes; it locks the chain
    head once for all of them, and publishes them to the console after commit.
    """
    if not events:
        return []
    now = timezone.now()
    head = AuditChainHead.objects.select_for_update().get(pk=1)
    rows = []
    prev_hash = head.hash
    for offset, pending in enumerate(events, start=1):
        row = AuditEvent(
            sequence=head.sequence + offset, created_at=now, prev_hash=prev_hash, **asdict(pending)
        )
        row.hash = prev_hash = chain_hash(prev_hash, row)
        rows.append(row)
    AuditEvent.objects.bulk_create(rows)
    head.sequence = rows[-1].sequence
    head.hash = rows[-1].hash
    head.save(update_fields=["sequence", "hash"])

    # Subscribers (the live console, the notices) hear only of what committed; one
    # failing does not keep the others from hearing.
    for subscriber in subscribers():
        transaction.on_commit(lambda subscriber=subscriber: subscriber(rows), robust=True)
    return rows


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    checked: int
    first_broken_sequence: int | None = None
    problem: str = ""
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH

    @property
    def line(self) -> str:
        """One line for a person: what was verified, or the first bad sequence and why."""
        if self.intact:
            return (
                f"Audit chain intact: {self.checked} events verified up to its head "
                f"#{self.head_sequence} {self.head_hash[:16]}."
            )
        return f"Audit chain BROKEN at #{self.first_broken_sequence}: {self.problem}"


def verify_chain(rows: Iterable[AuditEvent], prev_hash: str = GENESIS_HASH) -> ChainReport:
    """Recompute the chain over `rows` (in sequence order) starting from `prev_hash`."""
    checked = 0
    expected_sequence = None
    for row in rows:
        if expected_sequence is not None and row.sequence != expected_sequence:
            missing = _span(expected_sequence, row.sequence - 1)
            return ChainReport(
                False,
                checked,
                expected_sequence,
                f"{missing} missing (deleted) before #{row.sequence}",
            )
        if row.prev_hash != prev_hash:
            return ChainReport(
                False,
                checked,
                row.sequence,
                "does not link to the event before it (inserted, or the chain re-written)",
            )
        if not hmac.compare_digest(chain_hash(prev_hash, row), row.hash):
            return ChainReport(
                False,
                checked,
                row.sequence,
                "its content does not match its HMAC (edited, or written without Warden's key)",
            )
        prev_hash = row.hash
        expected_sequence = row.sequence + 1
        checked += 1
    last = expected_sequence - 1 if expected_sequence is not None else 0
    return ChainReport(True, checked, head_sequence=last, head_hash=prev_hash)


def verify_audit_log(expected: tuple[int, str] | None = None) -> ChainReport:
    """The whole log from its first event to the chain head, and against `expected`, a head
    (sequence, hash) published earlier, when given. The admin's action and `manage.py
    verify_audit` call this."""
    head = AuditChainHead.objects.get(pk=1)
    rows = AuditEvent.objects.order_by("sequence").iterator(chunk_size=2000)
    first = AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True).first()
    if first is not None and first != 1:
        return ChainReport(False, 0, 1, f"{_span(1, first - 1)} missing (deleted) from the start")
    report = verify_chain(rows, GENESIS_HASH)
    if not report.intact:
        return report
    last, last_hash = report.head_sequence, report.head_hash
    if last < head.sequence:
        return ChainReport(
            False,
            report.checked,
            last + 1,
            f"{_span(last + 1, head.sequence)} missing (deleted): the log ends at #{last}, "
            f"its head is at #{head.sequence}",
        )
    if last > head.sequence:
        return ChainReport(
            False,
            report.checked,
            head.sequence + 1,
            f"written past the chain head (#{head.sequence}) without Warden",
        )
    if not hmac.compare_digest(last_hash, head.hash):
        return ChainReport(False, report.checked, last, "does not match the chain head's hash")
    if expected is not None:
        sequence, expected_hash = expected
        row = AuditEvent.objects.filter(sequence=sequence).values_list("hash", flat=True).first()
        if row is None:
            return ChainReport(
                False,
                report.checked,
                sequence,
                f"missing: the published head #{sequence} is past the log's end (#{last})",
            )
        if not hmac.compare_digest(row, expected_hash):
            return ChainReport(
                False, report.checked, sequence, "differs from the head published for it"
            )
    return report


def _span(first: int, last: int) -> str:
    return f"#{first}" if first == last else f"#{first}-#{last}"


def checkpoint() -> AuditChainHead:
    """Publish the chain head outside the database: one log line (and the /metrics gauge
    reads the same row). Scheduled with the sweeper."""
    head = AuditChainHead.objects.get(pk=1)
    logger.info("audit checkpoint: head #%d %s", head.sequence, head.hash)
    return head


# The database refuses UPDATE, DELETE and TRUNCATE of the log except in maintenance,
# which only the test suite's flush enters (tests/conftest.py): a person who must
# rewrite the log has to drop the triggers, and the chain still shows what changed.
_maintenance = threading.local()


def audit_maintenance_active() -> int:
    return int(getattr(_maintenance, "active", False))


@contextlib.contextmanager
def audit_maintenance() -> Iterator[None]:
    """Let this thread's connection delete the log (a test database being emptied)."""
    _maintenance.active = True
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('warden.audit_maintenance', 'on', false)")
    try:
        yield
    finally:
        _maintenance.active = False
        if connection.vendor == "postgresql" and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('warden.audit_maintenance', 'off', false)")
