"""Signed checkpoints of the audit log, and the inclusion proofs that lead to them.

A checkpoint signs, with Warden's Ed25519 key (governance/audit/signing.py), the Merkle root
of the log's first `tree_size` records (governance/audit/verifier.py defines the tree), the
HMAC chain's hash at that record, and the time. The sweeper signs one every minute when the
log has grown, and every export signs the log up to its end first, so a full export is
proven up to its last record.

Warden signs only what its HMAC key verifies: the records a new checkpoint adds are checked
against the chain (from the previous checkpoint's hash), so a record edited in the database
is refused here, not signed. A checkpoint is not an audit event: it changes no governed
state, and an event would move the head it just signed.
"""

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from governance.audit import signing
from governance.audit.errors import Unavailable
from governance.audit.log import GENESIS_HASH, event_record, verify_chain
from governance.audit.verifier import (
    RECORD_FIELDS,
    Frontier,
    checkpoint_note,
    inclusion_proof,
    leaf_hash,
    tree_levels,
)
from governance.models import AuditChainHead, AuditCheckpoint, AuditEvent

logger = logging.getLogger("warden.audit")
CHUNK = 2000


class CheckpointRefused(Unavailable):
    """The records since the last checkpoint do not verify: nothing is signed."""


def signed_time(checkpoint: AuditCheckpoint) -> str:
    return checkpoint.signed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def checkpoint_json(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """The checkpoint as exports carry it: what its signature covers, and the signature."""
    return {
        "size": checkpoint.tree_size,
        "root": checkpoint.root_hash,
        "head": checkpoint.head_hash,
        "time": signed_time(checkpoint),
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


def sign_checkpoint() -> AuditCheckpoint:
    """The log signed at its present head: the newest checkpoint when the log has not grown
    since, else a new one over the records added since it. Raises CheckpointRefused."""
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is None:
        raise CheckpointRefused(
            "audit_head_missing",
            "The audit log's chain head is missing: nothing is signed (manage.py verify_audit).",
        )
    last = AuditCheckpoint.objects.order_by("-tree_size").first()
    if last is not None and last.tree_size > head.sequence:
        # The log no longer reaches what was signed: its tail was cut, head and all.
        raise _refused(
            head.sequence,
            f"its head is at #{head.sequence}, before the checkpoint signed at "
            f"#{last.tree_size}: records were deleted",
        )
    if last is not None and last.tree_size == head.sequence:
        if last.head_hash != head.hash:
            raise _refused(head.sequence, "its head differs from the checkpoint signed there")
        return last
    frontier = Frontier.from_json(last.frontier) if last else Frontier()
    start, prev_hash = (last.tree_size, last.head_hash) if last else (0, GENESIS_HASH)
    rows = (
        AuditEvent.objects.filter(sequence__gt=start, sequence__lte=head.sequence)
        .annotate(stored_data=Cast("data", TextField()))
        .order_by("sequence")
    )
    report = verify_chain(_adding(rows.iterator(chunk_size=CHUNK), frontier, start), prev_hash)
    if not report.intact or report.head_sequence != head.sequence:
        raise _refused(
            head.sequence,
            report.line if not report.intact else f"the log ends at #{report.head_sequence}",
        )
    values = {
        "size": head.sequence,
        "root": frontier.root().hex(),
        "head": report.head_hash,
        "time": timezone.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_id": signing.current_key_id(),
    }
    checkpoint = AuditCheckpoint(
        tree_size=values["size"],
        root_hash=values["root"],
        head_hash=values["head"],
        signed_at=datetime.fromisoformat(values["time"]),
        key_id=values["key_id"],
        public_key=signing.public_key_raw_hex(),
        signature=signing.sign(checkpoint_note(values)),
        frontier=frontier.to_json(),
    )
    try:
        with transaction.atomic():
            checkpoint.save()
    except IntegrityError:  # signed at the same size by another process meanwhile
        return AuditCheckpoint.objects.get(tree_size=values["size"])
    logger.info(
        "audit checkpoint: head #%d %s root %s signed by %s",
        checkpoint.tree_size,
        checkpoint.head_hash,
        checkpoint.root_hash,
        checkpoint.key_id,
    )
    return checkpoint


def _refused(sequence: int, line: str) -> CheckpointRefused:
    logger.error("audit checkpoint refused at #%d: %s", sequence, line)
    return CheckpointRefused(
        "audit_chain_broken", f"The audit log does not verify, so Warden signs nothing: {line}"
    )


def _adding(rows: Iterable[AuditEvent], frontier: Frontier, start: int) -> Iterable[AuditEvent]:
    """`rows`, each added to `frontier` as it passes (its leaf recomputed from the record,
    so a stored leaf hash that lies is not signed)."""
    expected = start + 1
    for row in rows:
        if row.sequence != expected:
            yield row  # verify_chain names the gap
            return
        leaf = leaf_hash(event_record(row, RECORD_FIELDS))
        if row.leaf_hash and row.leaf_hash != leaf.hex():
            raise CheckpointRefused(
                "audit_leaf_mismatch",
                f"#{row.sequence}: its stored leaf hash does not match its content: "
                "nothing is signed (manage.py verify_audit)",
            )
        frontier.add(leaf)
        expected += 1
        yield row


class ProofTree:
    """The tree of the log's first `tree_size` records, for inclusion proofs: it reads the
    stored leaf of each once (32 bytes a record) and keeps every level."""

    def __init__(self, tree_size: int) -> None:
        leaves = [
            bytes.fromhex(value)
            for value in AuditEvent.objects.filter(sequence__lte=tree_size)
            .order_by("sequence")
            .values_list("leaf_hash", flat=True)
            .iterator(chunk_size=20_000)
        ]
        if len(leaves) != tree_size:
            raise CheckpointRefused(
                "audit_chain_broken",
                f"The audit log holds {len(leaves)} records up to #{tree_size}: no proof is made",
            )
        self.levels = tree_levels(leaves)

    def proof(self, sequence: int) -> list[str]:
        return [node.hex() for node in inclusion_proof(self.levels, sequence - 1)]
