"""The tamper-evident audit log: events chained by SHA-256, appended once per transaction.

Every state change writes its events in the same transaction as the change, so
the log is also the outbox the live console reads (governance/live.py).
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from governance.live import publish_events
from governance.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64


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


def chain_hash(prev_hash: str, row: AuditEvent) -> str:
    """The hash of one event: its content and the previous hash, canonically encoded."""
    content = json.dumps(
        {
            "sequence": row.sequence,
            "created_at": row.created_at.isoformat(),
            "actor": row.actor,
            "action": row.action,
            "object_type": row.object_type,
            "object_id": row.object_id,
            "ticket_id": row.ticket_id,
            "summary": row.summary,
            "data": row.data,
        },
        sort_keys=True,
        separators=(",", ":"),
        cls=DjangoJSONEncoder,
    )
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


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
            sequence=head.sequence + offset,
            created_at=now,
            actor=pending.actor,
            action=pending.action,
            object_type=pending.object_type,
            object_id=pending.object_id,
            ticket_id=pending.ticket_id,
            summary=pending.summary,
            data=pending.data,
            prev_hash=prev_hash,
        )
        row.hash = prev_hash = chain_hash(prev_hash, row)
        rows.append(row)
    AuditEvent.objects.bulk_create(rows)
    head.sequence = rows[-1].sequence
    head.hash = rows[-1].hash
    head.save(update_fields=["sequence", "hash"])

    transaction.on_commit(lambda: publish_events(rows))
    return rows


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    checked: int
    first_broken_sequence: int | None = None
    problem: str = ""


def verify_chain(rows: Iterable[AuditEvent], prev_hash: str = GENESIS_HASH) -> ChainReport:
    """Recompute the chain over `rows` (in sequence order) starting from `prev_hash`."""
    checked = 0
    expected_sequence = None
    for row in rows:
        if expected_sequence is not None and row.sequence != expected_sequence:
            return ChainReport(False, checked, row.sequence, f"sequence gap before #{row.sequence}")
        if row.prev_hash != prev_hash:
            return ChainReport(False, checked, row.sequence, f"#{row.sequence} does not link")
        if chain_hash(prev_hash, row) != row.hash:
            return ChainReport(False, checked, row.sequence, f"#{row.sequence} was altered")
        prev_hash = row.hash
        expected_sequence = row.sequence + 1
        checked += 1
    return ChainReport(True, checked)
