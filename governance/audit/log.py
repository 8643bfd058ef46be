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
- the database refuses UPDATE, DELETE and TRUNCATE of the log whatever a session sets
  (governance migrations 0008 and 0018): only the tables' owner may set the triggers aside;
- each record's data is read as stored and must be canonical JSON: a duplicated key (which
  two readers read two ways) is refused;
- each event about a governed row carries the digest of that row's state as the change
  left it (governance/audit/state.py), so `verify_audit --state` names a row edited in the
  database without Warden.
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
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from governance.audit.canonical import NotCanonical, strict_json
from governance.audit.errors import Unavailable
from governance.audit.state import current_digest
from governance.audit.subscribers import subscribers
from governance.audit.verifier import CONTENT_FIELDS, RECORD_FIELDS, leaf_hash
from governance.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
# An audit record's fields are defined once, in the offline verifier (what the chain's HMAC
# covers, in this order in the exports, then the two links): the console, the API, the
# exports and the verifier show and hash the same record.
logger = logging.getLogger("warden.audit")


class AuditUnavailable(Unavailable):
    """The log cannot take events (its head row is gone): a governed change is refused."""


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
    """The canonical text the chain's HMAC covers. An event without a state digest (older
    than digests, or not about a governed row) is covered as it was before them."""
    record = event_record(row, [name for name in CONTENT_FIELDS if name != "object_state"])
    state = getattr(row, "object_state", "")
    if state:
        record["object_state"] = state
    return json.dumps(record, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


def append_events(events: Sequence[PendingEvent]) -> list[AuditEvent]:
    """Chain `events` onto the log and return the stored rows.

    Must run inside the transaction that made the changes; it locks the chain
    head once for all of them, and publishes them to the console after commit.
    """
    if not events:
        return []
    # Milliseconds: the precision Django's JSON encoder keeps, so a record that goes through
    # dumpdata and loaddata (a backup, a move between databases) still verifies.
    now = timezone.now()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        raise AuditUnavailable(
            "audit_head_missing",
            "The audit log's chain head is missing, so nothing can be recorded: the change "
            "was not made. An operator must restore the head (manage.py verify_audit).",
        )
    rows = []
    prev_hash = head.hash
    digests: dict[tuple[str, str], str] = {}
    for offset, pending in enumerate(events, start=1):
        # The governed row's state as the whole change left it (read once per row).
        subject = (pending.object_type, pending.object_id)
        if subject not in digests:
            digests[subject] = current_digest(*subject)
        row = AuditEvent(
            sequence=head.sequence + offset,
            created_at=now,
            prev_hash=prev_hash,
            object_state=digests[subject],
            **asdict(pending),
        )
        row.hash = prev_hash = chain_hash(prev_hash, row)
        # The record's leaf in the signed Merkle tree, computed once, here.
        row.leaf_hash = leaf_hash(event_record(row, RECORD_FIELDS)).hex()
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
        if self.first_broken_sequence is None:
            return f"Audit chain BROKEN: {self.problem}"
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
        stored = getattr(row, "stored_data", None)
        if stored is not None:
            try:
                row.data = strict_json(stored)
            except NotCanonical as exc:
                return ChainReport(False, checked, row.sequence, f"its data {exc}")
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
    head = AuditChainHead.objects.filter(pk=1).first()
    # Each record's data as stored, read strictly (governance/audit/canonical.py).
    rows = (
        AuditEvent.objects.annotate(stored_data=Cast("data", TextField()))
        .order_by("sequence")
        .iterator(chunk_size=2000)
    )
    first = AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True).first()
    if first is not None and first != 1:
        return ChainReport(False, 0, 1, f"{_span(1, first - 1)} missing (deleted) from the start")
    report = verify_chain(rows, GENESIS_HASH)
    if not report.intact:
        return report
    last, last_hash = report.head_sequence, report.head_hash
    if head is None:
        return ChainReport(
            False,
            report.checked,
            None,
            f"its head row is missing (deleted): nothing records where the log should end "
            f"(the events verified end at #{last})",
        )
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
    reads the same row). Scheduled with the sweeper. A missing head is logged as an error and
    published as #0, which no earlier checkpoint matches."""
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is None:
        logger.error("audit checkpoint: the chain head row is missing (manage.py verify_audit)")
        return AuditChainHead(sequence=0)
    logger.info("audit checkpoint: head #%d %s", head.sequence, head.hash)
    return head


# The database refuses UPDATE, DELETE and TRUNCATE of the log (and DELETE of post-action
# reviews) whatever a session sets. On PostgreSQL only the tables' owner may set the
# triggers aside (ALTER TABLE ... DISABLE TRIGGER), and the application's role does not own
# them in production (docs/operators.md); the test suite runs as the owner. On SQLite the
# triggers ask warden_audit_maintenance(), a function this process registers on its own
# connections (governance/apps.py): SQL cannot flip it.
_maintenance = threading.local()
KEPT_TABLES = ("governance_auditevent", "feedback_postactionreview")


def audit_maintenance_active() -> int:
    return int(getattr(_maintenance, "active", False))


@contextlib.contextmanager
def audit_maintenance() -> Iterator[None]:
    """Let this thread's connection delete the log (a test database being emptied).

    On PostgreSQL it disables the triggers inside one transaction, so they are back when it
    ends however it ends; a role that does not own the tables is refused here."""
    _maintenance.active = True
    try:
        if connection.vendor == "postgresql":
            with transaction.atomic():
                _set_triggers("DISABLE")
                yield
                _set_triggers("ENABLE")
        else:
            yield
    finally:
        _maintenance.active = False


def _set_triggers(switch: str) -> None:
    with connection.cursor() as cursor:
        for table in KEPT_TABLES:
            cursor.execute(f"ALTER TABLE {connection.ops.quote_name(table)} {switch} TRIGGER USER")
