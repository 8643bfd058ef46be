"""The audit trail taken away: filtered, streamed as CSV, JSON or NDJSON, verifiable offline.

Every record carries its sequence, hash and previous hash, so an auditor holding
WARDEN_AUDIT_KEY proves a file complete and unaltered between its first and last
sequence (`manage.py verify_audit --file EXPORT`) without the database. Rows are
read in chunks and written as they are read: memory stays flat however long the
trail (a million events is one pass over a server-side cursor).
"""

import csv
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q, QuerySet

from governance.audit.errors import Invalid
from governance.audit.log import RECORD_FIELDS, ChainReport, chain_hash, verify_chain
from governance.models import AuditEvent
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


def record(values: tuple) -> dict[str, Any]:
    """One exported record from a row of COLUMNS: everything the chain's HMAC covers, and
    both links (created_at written exactly as the HMAC read it)."""
    item = dict(zip(COLUMNS, values, strict=True))
    item["created_at"] = item["created_at"].isoformat()
    return item


def _json(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True, ensure_ascii=False)


class _Line:
    """csv.writer's file: hands back each written row instead of keeping it."""

    def write(self, text: str) -> str:
        return text


def stream(events: QuerySet[AuditEvent], fmt: str) -> Iterator[str]:
    """The export of `events` in `fmt`, in sequence order, as chunks of text."""
    if fmt not in FORMATS:
        raise ExportError(f"format: choose one of {', '.join(FORMATS)}, not {fmt!r}")
    # Plain tuples from a server-side cursor: no model instances, constant memory.
    rows = events.order_by("sequence").values_list(*COLUMNS).iterator(chunk_size=CHUNK)
    if fmt == "csv":
        writer = csv.writer(_Line())
        yield writer.writerow(COLUMNS)
        for values in rows:
            item = record(values)
            item["data"] = _json(item["data"])
            yield writer.writerow([item[column] for column in COLUMNS])
    elif fmt == "ndjson":
        for values in rows:
            yield _json(record(values)) + "\n"
    else:
        yield "["
        for n, values in enumerate(rows):
            yield ("," if n else "") + "\n" + _json(record(values))
        yield "\n]\n"


def read_export(handle: IO[str], fmt: str) -> Iterator[AuditEvent]:
    """The records of an export file as (unsaved) events, in file order."""
    if fmt == "csv":
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                row["data"] = json.loads(row["data"])
            except (KeyError, TypeError, json.JSONDecodeError) as exc:
                raise ExportError(f"line {line}: data is not JSON ({exc})") from exc
            yield _event(row, f"line {line}")
    elif fmt == "ndjson":
        for line, text in enumerate(handle, start=1):
            if text.strip():
                yield _event(_parse(text, f"line {line}"), f"line {line}")
    elif fmt == "json":
        items = _parse(handle.read(), "the file")
        if not isinstance(items, list):
            raise ExportError("the file: a JSON export is a list of records")
        for n, item in enumerate(items, start=1):
            yield _event(item, f"record {n}")
    else:
        raise ExportError(f"format: choose one of {', '.join(FORMATS)}, not {fmt!r}")


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{where}: not JSON ({exc.msg})") from exc


def _event(item: Any, where: str) -> AuditEvent:
    if not isinstance(item, dict):
        raise ExportError(f"{where}: not a record")
    item = {"object_state": "", **item}  # exports older than state digests have none
    missing = [column for column in COLUMNS if column not in item]
    if missing:
        raise ExportError(f"{where}: {', '.join(missing)} missing")
    try:
        values = {name: item[name] for name in COLUMNS}
        values["sequence"] = int(item["sequence"])
        values["created_at"] = datetime.fromisoformat(item["created_at"])
        return AuditEvent(**values)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{where}: {exc}") from exc


def verify_export(events: Iterable[AuditEvent]) -> tuple[ChainReport, int | None]:
    """Verify an export's records link and match their HMACs from its first record's
    previous hash on; returns the report and the first sequence (None when empty).

    A filtered export holds gaps by design: verify an unfiltered range to prove it whole.
    """
    iterator = iter(events)
    first = next(iterator, None)
    if first is None:
        return ChainReport(True, 0), None

    def chained() -> Iterator[AuditEvent]:
        yield first
        yield from iterator

    return verify_chain(chained(), first.prev_hash), first.sequence


def verify_records(events: Iterable[AuditEvent]) -> ChainReport:
    """Each record's own HMAC, for a filtered export (which has gaps by design): proves
    every record is as Warden wrote it, not that none is missing between them."""
    checked = 0
    last = None
    for event in events:
        if not hmac.compare_digest(chain_hash(event.prev_hash, event), event.hash):
            return ChainReport(
                False,
                checked,
                event.sequence,
                "its content does not match its HMAC (edited, or written without Warden's key)",
            )
        checked += 1
        last = event
    if last is None:
        return ChainReport(True, 0)
    return ChainReport(True, checked, head_sequence=last.sequence, head_hash=last.hash)
