"""The audit trail taken away: filtered, streamed as CSV, JSON or NDJSON, with its proof.

Every export first has Warden sign the log up to its present head (a checkpoint,
governance/audit/checkpoints.py) and holds the records up to it. It ends with its proof:
that checkpoint, and a statement Warden signs of what was exported (the filter, how many
records and which, a digest of their leaves, the words used for the codes). A filtered
export carries, with each record, its inclusion proof to the signed root. Whoever holds
Warden's public key checks the file alone with governance/audit/verifier.py (one file,
Python and `cryptography`), which `manage.py verify_audit --file` runs too.

Rows are read in chunks and written as they are read: memory stays flat however long the
trail (a filtered export also holds the tree's leaves, 32 bytes a record, for the proofs).
"""

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q, QuerySet

from governance.audit.checkpoints import ProofTree, checkpoint_json, sign_checkpoint
from governance.audit.errors import Invalid
from governance.audit.log import RECORD_FIELDS
from governance.audit.signing import current_key_id, sign
from governance.audit.verifier import (
    CSV_COLUMNS,
    PROOF_KEY,
    readable_data,
    sequence_ranges,
    statement_note,
)
from governance.models import AuditCheckpoint, AuditEvent
from governance.rules.labels import event_label
from remediation.models import Host, Ticket

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
COLUMNS = RECORD_FIELDS
CHUNK = 2000


class ExportError(Invalid, ValueError):
    """A filter or file that cannot be used, said in one line naming the field."""

    def __init__(self, message: str) -> None:
        field, _, problem = message.partition(": ")  # "until: must be after since"
        super().__init__("invalid", message, {field: [problem]})


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    ticket: str = ""
    host: str = ""
    actor: str = ""
    action: str = ""
    after: int | None = None  # sequence: records after this one (resuming an export)

    def apply(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        if self.since is not None:
            events = events.filter(created_at__gte=self.since)
        if self.until is not None:
            events = events.filter(created_at__lt=self.until)
        if self.ticket:
            events = events.filter(ticket_id=self.ticket)
        if self.host:
            # Events about the host itself, and about its tickets and their work.
            host_ids = Host.objects.filter(name=self.host).values_list("pk", flat=True)
            tickets = Ticket.objects.filter(host__name=self.host).values("ticket_id")
            events = events.filter(
                Q(ticket_id__in=tickets)
                | Q(object_type="Host", object_id__in=[str(pk) for pk in host_ids])
            )
        if self.actor:
            events = events.filter(actor=self.actor)
        if self.action:
            # "approval" matches approval.approved, approval.rejected...
            events = events.filter(Q(action=self.action) | Q(action__startswith=f"{self.action}."))
        if self.after is not None:
            events = events.filter(sequence__gt=self.after)
        return events

    def described(self) -> dict[str, str]:
        """The filter as the export's signed statement and its file name say it."""
        values = {
            "ticket": self.ticket,
            "host": self.host,
            "actor": self.actor,
            "action": self.action,
            "after": str(self.after) if self.after is not None else "",
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {name: value for name, value in values.items() if value}


def record(values: tuple) -> dict[str, Any]:
    """One exported record from a row of COLUMNS + leaf_hash: everything the chain's HMAC
    covers, both links, and its leaf (created_at written exactly as the HMAC read it)."""
    item = dict(zip((*COLUMNS, "leaf_hash"), values, strict=True))
    item["created_at"] = item["created_at"].isoformat()
    return item


def _json(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True, ensure_ascii=False)


class _Line:
    """csv.writer's file: hands back each written row instead of keeping it."""

    def write(self, text: str) -> str:
        return text


class Statement:
    """What an export holds, gathered record by record, then signed by Warden."""

    def __init__(self, checkpoint: AuditCheckpoint, described: Mapping[str, str]) -> None:
        self.checkpoint = checkpoint
        self.filter = dict(described)
        self.count = 0
        self.digest = hashlib.sha256()
        self.ranges: list[list[int]] = []
        self.labels: dict[str, str] = {}

    def add(self, item: Mapping[str, Any]) -> None:
        self.count += 1
        self.digest.update(bytes.fromhex(item["leaf_hash"]))
        sequence = item["sequence"]
        if self.ranges and self.ranges[-1][1] == sequence - 1:
            self.ranges[-1][1] = sequence
        else:
            self.ranges.append([sequence, sequence])
        if item["action"] not in self.labels:
            self.labels[item["action"]] = event_label(item["action"])

    def signed(self, document: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The proof an export ends with: the checkpoint and this statement, signed."""
        statement = {
            "size": self.checkpoint.tree_size,
            "root": self.checkpoint.root_hash,
            "filter": self.filter,
            "count": self.count,
            "sequences": ",".join(
                sequence_ranges(range(first, last + 1)) for first, last in self.ranges
            ),
            "digest": self.digest.hexdigest(),
            "labels": dict(sorted(self.labels.items())),
            "document": dict(document) if document else None,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "key_id": current_key_id(),
        }
        statement["signature"] = sign(statement_note(statement))
        return {"checkpoint": checkpoint_json(self.checkpoint), "statement": statement}


@dataclass(frozen=True)
class Export:
    """An export about to be streamed: the log signed up to its end, and its file name."""

    events: QuerySet[AuditEvent]
    fmt: str
    described: dict[str, str]
    checkpoint: AuditCheckpoint

    @property
    def filename(self) -> str:
        return export_filename(self.described, self.checkpoint, self.fmt)

    def chunks(self) -> Iterator[str]:
        return stream(self.events, self.fmt, self.described, self.checkpoint)


def prepare(events: QuerySet[AuditEvent], fmt: str, described: Mapping[str, str]) -> Export:
    """Sign the log up to its head and bound `events` to it. `described` says the filter
    (empty: the whole log); it is signed, so it must say what narrowed `events`."""
    if fmt not in FORMATS:
        raise ExportError(f"format: choose one of {', '.join(FORMATS)}, not {fmt!r}")
    checkpoint = sign_checkpoint()
    return Export(events, fmt, dict(described), checkpoint)


def stream(
    events: QuerySet[AuditEvent],
    fmt: str,
    described: Mapping[str, str],
    checkpoint: AuditCheckpoint,
) -> Iterator[str]:
    """The export of `events` up to `checkpoint` in `fmt`, in sequence order, as text."""
    statement = Statement(checkpoint, described)
    # A filtered export proves each record; the whole log proves itself by its root.
    tree = ProofTree(checkpoint.tree_size) if described else None
    rows = (
        events.filter(sequence__lte=checkpoint.tree_size)
        .order_by("sequence")
        .values_list(*COLUMNS, "leaf_hash")
        .iterator(chunk_size=CHUNK)
    )

    def items() -> Iterator[dict[str, Any]]:
        for values in rows:
            item = record(values)
            statement.add(item)
            if tree is not None:
                item["proof"] = tree.proof(item["sequence"])
            yield item

    if fmt == "csv":
        writer = csv.writer(_Line())
        yield writer.writerow([header for header, _ in CSV_COLUMNS])
        for item in items():
            yield writer.writerow(csv_row(item))
        yield writer.writerow([PROOF_KEY, _json(statement.signed())])
    elif fmt == "ndjson":
        for item in items():
            yield _json(item) + "\n"
        yield _json({PROOF_KEY: statement.signed()}) + "\n"
    else:
        yield '{"records": ['
        for n, item in enumerate(items()):
            yield ("," if n else "") + "\n" + _json(item)
        yield f"\n], {json.dumps(PROOF_KEY)}: {_json(statement.signed())}}}\n"


def csv_row(item: Mapping[str, Any]) -> list[Any]:
    """One CSV row: the event and its details in words beside the code and the data."""
    words = {
        "event": event_label(item["action"]),
        "details": readable_data(item["data"]),
        "data": _json(item["data"]),
        "proof": " ".join(item.get("proof", [])),
    }
    return [
        words[header.split()[0]] if field is None else words.get(field, item.get(field, ""))
        for header, field in CSV_COLUMNS
    ]


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def export_filename(described: Mapping[str, str], checkpoint: AuditCheckpoint, fmt: str) -> str:
    """warden-audit_ticket-INC-000042_2026-12-01_2026-12-06.csv, or for the whole log
    warden-audit_all_until-2026-12-06T14-54Z.csv: what it holds, and up to when."""
    parts = [
        f"{name}-{_UNSAFE.sub('-', value).strip('-')}"
        for name, value in described.items()
        if name not in ("since", "until")
    ]
    signed = checkpoint.signed_at.astimezone(UTC).strftime("%Y-%m-%dT%H-%MZ")
    since, until = described.get("since", "")[:10], described.get("until", "")[:10]
    if since and until:
        period = f"{since}_{until}"
    elif since:
        period = f"{since}_until-{signed}"
    elif until:
        period = f"until-{until}"
    else:
        period = f"until-{signed}"
    return "_".join(["warden-audit", *(parts or ["all"]), period]) + f".{fmt}"


def proven_records(
    events: QuerySet[AuditEvent], described: Mapping[str, str]
) -> tuple[list[dict[str, Any]], Statement]:
    """`events` (a few: a ticket's) as exported records with their inclusion proofs to a
    checkpoint signed now, and the statement to sign once the document is complete."""
    checkpoint = sign_checkpoint()
    statement = Statement(checkpoint, described)
    rows = list(
        events.filter(sequence__lte=checkpoint.tree_size)
        .order_by("sequence")
        .values_list(*COLUMNS, "leaf_hash")
    )
    tree = ProofTree(checkpoint.tree_size) if rows else None
    items = []
    for values in rows:
        item = record(values)
        statement.add(item)
        item["proof"] = tree.proof(item["sequence"]) if tree else []
        items.append(item)
    return items, statement
