"""Warden's audit verifier: proves an audit export or a ticket's evidence JSON without Warden.

One file, the Python standard library and `cryptography` only, so an auditor can run it
alone, with Warden's published public key:

    python verifier.py EXPORT.csv --public-key warden-audit.pem

Warden's side (governance.audit.checkpoints, governance.exports) imports the definitions
below, so both sides compute the same bytes:
- a record's leaf is SHA-256(0x00 || its canonical bytes): the record's fields as sorted,
  compact, ASCII JSON; the log is a Merkle tree over the leaves in sequence order, built as
  RFC 6962 (Certificate Transparency) builds it, nodes SHA-256(0x01 || left || right);
- a checkpoint is a short text (size, root, the HMAC chain's hash at that size, time, key
  id) signed with Warden's Ed25519 key; the key id is the SHA-256 of the public key;
- an export ends with its proof: the checkpoint, and a signed statement of what was
  exported (filter, count, which sequences, a digest of their leaves, the words used for
  the codes, and for evidence a digest of each section). A full export is proven by its
  records adding up to the signed root; a filtered one by an inclusion proof per record.

Exit status: 0 verified, 1 tampered (one line per problem), 2 cannot be verified (not an
export, no proof, unreadable key).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# An audit record's fields: what the chain's HMAC covers, then the two links.
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
    "object_state",
)
LINK_FIELDS = ("prev_hash", "hash")
RECORD_FIELDS = CONTENT_FIELDS + LINK_FIELDS

CHECKPOINT_NOTE = "warden-audit-checkpoint/v1"
STATEMENT_NOTE = "warden-audit-export/v1"
PROOF_KEY = "warden_audit_proof"  # the trailer's key (JSON) or first cell (CSV)

# The CSV's columns: words for people beside the codes, and every field the proof needs.
# (header, record field); a field of None is for reading only, checked against the codes.
CSV_COLUMNS = (
    ("sequence", "sequence"),
    ("time", "created_at"),
    ("event", None),
    ("event code", "action"),
    ("actor", "actor"),
    ("object type", "object_type"),
    ("object id", "object_id"),
    ("ticket", "ticket_id"),
    ("summary", "summary"),
    ("details", None),
    ("data (JSON)", "data"),
    ("object state", "object_state"),
    ("previous hash", "prev_hash"),
    ("hash", "hash"),
    ("leaf hash", "leaf_hash"),
    ("inclusion proof", "proof"),
)

OK, TAMPERED, UNVERIFIABLE = 0, 1, 2


# -- hashes ---------------------------------------------------------------------------------


def canonical(value: Any) -> bytes:
    """The one byte string of a JSON value: keys sorted, no spaces, ASCII."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def canonical_record(record: Mapping[str, Any]) -> bytes:
    return canonical({name: record[name] for name in RECORD_FIELDS})


def leaf_hash(record: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(b"\x00" + canonical_record(record)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


class Frontier:
    """The roots of the perfect subtrees a tree of `size` leaves is made of, largest
    first: enough to extend the tree leaf by leaf and to compute its root, in O(log n)."""

    def __init__(self, nodes: Iterable[tuple[int, bytes]] = ()) -> None:
        self.nodes = list(nodes)

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.nodes)

    def add(self, leaf: bytes) -> None:
        size, node = 1, leaf
        while self.nodes and self.nodes[-1][0] == size:
            left_size, left = self.nodes.pop()
            size, node = left_size + size, node_hash(left, node)
        self.nodes.append((size, node))

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        node = self.nodes[-1][1]
        for _, left in reversed(self.nodes[:-1]):
            node = node_hash(left, node)
        return node

    def to_json(self) -> list[list[Any]]:
        return [[size, node.hex()] for size, node in self.nodes]

    @classmethod
    def from_json(cls, value: Sequence[Sequence[Any]]) -> Frontier:
        return cls((int(size), bytes.fromhex(node)) for size, node in value)


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree over `leaves`, bottom up; a lone last node is carried up,
    which builds the same tree as RFC 6962's split at the largest power of two."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def inclusion_proof(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """The audit path of leaf `index` (0-based) in the tree of `levels`."""
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: whether `path` leads leaf `index` of a tree of `size`
    leaves to `root`."""
    if index >= size:
        return False
    fn, sn, node = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            node = node_hash(sibling, node)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node == root


# -- signed notes ---------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """A public key's id: the SHA-256 of its raw bytes, in hex (first 32 digits)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def checkpoint_note(checkpoint: Mapping[str, Any]) -> bytes:
    """The text a checkpoint's signature covers."""
    return (
        f"{CHECKPOINT_NOTE}\n"
        f"size {int(checkpoint['size'])}\n"
        f"root {checkpoint['root']}\n"
        f"head {checkpoint['head']}\n"
        f"time {checkpoint['time']}\n"
        f"key {checkpoint['key_id']}\n"
    ).encode()


def statement_note(statement: Mapping[str, Any]) -> bytes:
    """The text an export statement's signature covers."""
    document = statement.get("document")
    return (
        f"{STATEMENT_NOTE}\n"
        f"checkpoint {int(statement['size'])} {statement['root']}\n"
        f"filter {canonical(statement['filter']).decode()}\n"
        f"records {int(statement['count'])}\n"
        f"sequences {statement['sequences']}\n"
        f"digest {statement['digest']}\n"
        f"labels {hashlib.sha256(canonical(statement['labels'])).hexdigest()}\n"
        f"document {hashlib.sha256(canonical(document)).hexdigest() if document else '-'}\n"
        f"time {statement['time']}\n"
        f"key {statement['key_id']}\n"
    ).encode()


def records_digest(leaves: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(leaf)
    return digest.hexdigest()


def sequence_ranges(sequences: Iterable[int]) -> str:
    """1,2,3,7,9,10 as "1-3,7,9-10"."""
    parts: list[str] = []
    start = last = None
    for n in sequences:
        if last is not None and n == last + 1:
            last = n
            continue
        if start is not None:
            parts.append(_range(start, last))
        start = last = n
    if start is not None:
        parts.append(_range(start, last))
    return ",".join(parts)


def _range(first: int, last: int | None) -> str:
    return str(first) if first == last else f"{first}-{last}"


def parse_ranges(text: str) -> list[tuple[int, int]]:
    spans = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        spans.append((int(first), int(last or first)))
    return spans


def readable_data(data: Any) -> str:
    """A record's data for people: `key: value` lines, nested values as compact JSON."""
    if not isinstance(data, dict):
        return json.dumps(data, ensure_ascii=False)
    lines = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def evidence_sections(document: Mapping[str, Any]) -> dict[str, str]:
    """The digest of each section of an evidence document but its proof."""
    return {
        name: hashlib.sha256(canonical(value)).hexdigest()
        for name, value in document.items()
        if name != "audit_proof"
    }


# -- reading a file -------------------------------------------------------------------------


class Unreadable(ValueError):
    """The file is not an export or evidence this verifier reads (exit 2)."""


@dataclass
class Parsed:
    kind: str  # "export" or "evidence"
    records: list[dict[str, Any]]
    proof: dict[str, Any] | None
    document: dict[str, Any] | None = None
    words: dict[int, tuple[str, str]] = field(default_factory=dict)  # CSV: event, details


def read_file(path: Path) -> Parsed:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                return read_csv(handle)
        with path.open(encoding="utf-8") as handle:
            if suffix in (".ndjson", ".jsonl"):
                return read_ndjson(handle)
            return read_json(json.load(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise Unreadable(f"{path}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise Unreadable(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from exc


def read_csv(handle: Iterable[str]) -> Parsed:
    rows = csv.reader(handle)
    header = next(rows, None)
    fields = dict(CSV_COLUMNS)
    if header is None or "sequence" not in header:
        raise Unreadable("not a Warden audit CSV: its first row names no sequence column")
    unknown = [name for name in header if name not in fields]
    missing = [name for name, f in CSV_COLUMNS if f in RECORD_FIELDS and name not in header]
    if unknown or missing:
        raise Unreadable(f"not a Warden audit CSV: columns {', '.join(missing or unknown)}")
    records, words, proof = [], {}, None
    for line, row in enumerate(rows, start=2):
        if row and row[0] == PROOF_KEY:
            proof = _json_cell(row[1] if len(row) > 1 else "", f"line {line}: its proof")
            continue
        if not any(row):
            continue
        cells = dict(zip(header, row, strict=False))
        record: dict[str, Any] = {fields[name]: cells.get(name, "") for name in header}
        record["data"] = _json_cell(record.get("data", ""), f"line {line}: its data (JSON)")
        record["proof"] = record.get("proof", "").split()
        record["sequence"] = _sequence(record.get("sequence"), f"line {line}")
        words[record["sequence"]] = (cells.get("event", ""), cells.get("details", ""))
        records.append(record)
    return Parsed("export", records, proof, words=words)


def read_ndjson(handle: Iterable[str]) -> Parsed:
    records, proof = [], None
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Unreadable(f"line {line}: not JSON ({exc.msg})") from exc
        if isinstance(item, dict) and PROOF_KEY in item:
            proof = item[PROOF_KEY]
        else:
            records.append(_record(item, f"line {line}"))
    return Parsed("export", records, proof)


def read_json(value: Any) -> Parsed:
    if isinstance(value, dict) and "audit_proof" in value and "ticket" in value:
        proof = value["audit_proof"]
        items = proof.get("records", []) if isinstance(proof, dict) else []
        records = [_record(item, f"audit record {n}") for n, item in enumerate(items, 1)]
        return Parsed("evidence", records, proof, document=value)
    if isinstance(value, dict) and "records" in value:
        items = value["records"]
        records = [_record(item, f"record {n}") for n, item in enumerate(items, start=1)]
        return Parsed("export", records, value.get(PROOF_KEY))
    if isinstance(value, dict) and "ticket" in value:
        raise Unreadable(
            "a ticket's evidence without its audit proof (made before Warden signed "
            "evidence): download it again"
        )
    raise Unreadable("not a Warden audit export or evidence JSON")


def _json_cell(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"{where} is not JSON ({exc.msg})") from exc


def _sequence(value: Any, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Unreadable(f"{where}: its sequence {value!r} is not a number") from None


def _record(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Unreadable(f"{where}: not a record")
    record = dict(item)
    record["sequence"] = _sequence(item.get("sequence"), where)
    return record


# -- verifying ------------------------------------------------------------------------------


@dataclass
class Report:
    """What the verifier found: `lines` to print, `problems` one line each."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    status: int = OK

    def problem(self, line: str, status: int = TAMPERED) -> None:
        self.problems.append(line)
        self.status = max(self.status, status)

    @property
    def ok(self) -> bool:
        return self.status == OK


def problems(report: Report) -> str:
    count = len(report.problems)
    return f"{count} problem{'s' if count != 1 else ''}"


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file; raises Unreadable naming the problem."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise Unreadable(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise Unreadable(f"{path}: not an Ed25519 public key")
    return key


def verify_path(path: Path, public_keys: Sequence[Ed25519PublicKey]) -> Report:
    try:
        parsed = read_file(path)
    except Unreadable as exc:
        report = Report()
        report.problem(f"Cannot verify {path.name}: {exc}", UNVERIFIABLE)
        return report
    return verify(parsed, public_keys)


def verify(parsed: Parsed, public_keys: Sequence[Ed25519PublicKey]) -> Report:
    report = Report()
    keys = {key_id(key): key for key in public_keys}
    records = parsed.records
    proof = parsed.proof
    if not isinstance(proof, dict) or "checkpoint" not in proof or "statement" not in proof:
        last = f"#{records[-1]['sequence']}" if records else "its header"
        report.problem(
            f"No signed proof: the file ends at {last} without Warden's signed checkpoint "
            "(the last records and the proof were cut off, or it was made before Warden "
            "signed its exports)"
        )
        return report
    checkpoint, statement = proof["checkpoint"], proof["statement"]
    try:
        size, root = int(checkpoint["size"]), bytes.fromhex(checkpoint["root"])
        signed_cp = _signed(checkpoint, checkpoint_note(checkpoint), keys, "checkpoint", report)
        # The statement's key, when the checkpoint's was already named unknown, says nothing new.
        signed_st = (signed_cp or statement["key_id"] in keys) and _signed(
            statement, statement_note(statement), keys, "statement", report
        )
    except (KeyError, TypeError, ValueError) as exc:
        report.problem(f"The proof is malformed ({exc.__class__.__name__}: {exc})")
        return report
    if not (signed_cp and signed_st):
        return report
    if (int(statement["size"]), statement["root"]) != (size, checkpoint["root"]):
        report.problem(
            f"The signed statement is about the log at #{statement['size']}, the checkpoint "
            f"at #{size}: the checkpoint was swapped for another"
        )
        return report

    leaves = _check_records(records, statement, report, parsed.words)
    if not report.ok:
        return report
    exported_filter = statement["filter"]
    when = _when(checkpoint["time"])
    signer = f"key {checkpoint['key_id'][:16]}"
    if parsed.kind == "evidence":
        _check_document(parsed.document or {}, statement, report)
    if not exported_filter and parsed.kind == "export":
        # A full export: every record from #1 to the checkpoint, adding up to its root.
        if root_of(leaves) != root:
            report.problem(
                f"The {len(leaves)} records do not add up to the root Warden signed at #{size}: "
                "a record was edited and its leaf hash recomputed"
            )
            return report
        report.lines.append(
            f"Export verified: all {size} records #1-#{size} are complete and unaltered, "
            f"as in the audit log Warden signed at #{size} on {when} ({signer})."
        )
        return report
    for record, leaf in zip(records, leaves, strict=True):
        try:
            path = [bytes.fromhex(node) for node in record.get("proof") or []]
        except (TypeError, ValueError):
            path = []
        if not verify_inclusion(record["sequence"] - 1, size, leaf, path, root):
            report.problem(
                f"#{record['sequence']}: not proven to be in the log Warden signed at #{size} "
                "(its content was edited, or its inclusion proof was changed)"
            )
    if not report.ok:
        return report
    left_out = _left_out(statement["sequences"], size)
    described = describe_filter(exported_filter)
    if parsed.kind == "evidence":
        document = parsed.document or {}
        ticket = (document.get("ticket") or {}).get("ticket_id", "?")
        report.lines.append(
            f"Evidence of ticket {ticket} verified: its {len(records)} audit records of "
            f"{size} are each proven to be in the audit log Warden signed at #{size} on "
            f"{when} ({signer}), and every section of the document "
            f"({', '.join(sorted(evidence_sections(document)))}) is as Warden produced it."
        )
    else:
        report.lines.append(
            f"Filtered export verified: {len(records)} records of {size}, each proven to be "
            f"in the audit log Warden signed at #{size} on {when} ({signer})."
        )
    what = "evidence" if parsed.kind == "evidence" else "export"
    report.lines.append(f"The {what}'s filter: {described}.")
    if left_out:
        report.lines.append(
            f"Records {left_out} are not included because of the filter, not removed: "
            f"Warden's signed statement lists the {len(records)} records "
            f"{'it exported' if what == 'export' else 'the evidence holds'}."
        )
    return report


def root_of(leaves: Iterable[bytes]) -> bytes:
    """The Merkle root of `leaves`, in one pass."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.add(leaf)
    return frontier.root()


def _signed(
    signed: Mapping[str, Any],
    note: bytes,
    keys: Mapping[str, Ed25519PublicKey],
    what: str,
    report: Report,
) -> bool:
    given = ", ".join(kid[:16] for kid in keys) or "none"
    key = keys.get(signed["key_id"])
    if key is None:
        report.problem(
            f"The {what} is signed with key {str(signed['key_id'])[:16]}, not with the public "
            f"key given ({given}): a wrong public key, or a file not signed by this Warden"
        )
        return False
    try:
        key.verify(base64.b64decode(signed["signature"], validate=True), note)
    except (InvalidSignature, ValueError):
        subject = f"#{signed['size']}" if what == "checkpoint" else "of the export"
        report.problem(
            f"The signed {what} {subject} does not match its signature: it was forged or "
            "edited after Warden signed it"
        )
        return False
    return True


def _check_records(
    records: Sequence[dict[str, Any]],
    statement: Mapping[str, Any],
    report: Report,
    words: Mapping[int, tuple[str, str]],
) -> list[bytes]:
    """Each record against its own leaf hash, its neighbours and the signed statement;
    returns the leaves. Names each bad record once."""
    size = int(statement["size"])
    labels = statement.get("labels") or {}
    leaves: list[bytes] = []
    previous: dict[str, Any] | None = None
    seen: set[int] = set()
    for record in records:
        sequence = record["sequence"]
        missing = [name for name in RECORD_FIELDS if name not in record]
        if missing:
            report.problem(f"#{sequence}: {', '.join(missing)} missing (a field was removed)")
            leaves.append(b"")
            continue
        leaf = leaf_hash(record)
        leaves.append(leaf)
        stated = record.get("leaf_hash")
        if stated and stated != leaf.hex():
            report.problem(
                f"#{sequence}: its content is not what Warden wrote (a field was edited: it "
                "no longer matches its leaf hash)"
            )
        if sequence in seen or (previous is not None and sequence < previous["sequence"]):
            report.problem(
                f"#{sequence} comes after #{previous['sequence']}: records reordered or repeated"
            )
        elif sequence > size:
            report.problem(f"#{sequence} is past the signed checkpoint #{size}: a record added")
        elif (
            previous is not None
            and sequence == previous["sequence"] + 1
            and record["prev_hash"] != previous["hash"]
        ):
            report.problem(
                f"#{sequence} does not link to #{previous['sequence']} (a record replaced, or "
                "its links edited)"
            )
        if sequence in words:
            word, details = words[sequence]
            if word != labels.get(record["action"], word):
                report.problem(
                    f"#{sequence}: its event reads {word!r} but its code {record['action']} "
                    f"means {labels[record['action']]!r} (the words were edited)"
                )
            if details != readable_data(record["data"]):
                report.problem(f"#{sequence}: its details do not say what its data says (edited)")
        seen.add(sequence)
        previous = record
    if not report.ok:
        return leaves
    listed = [
        n for first, last in parse_ranges(statement["sequences"]) for n in range(first, last + 1)
    ]
    present = [record["sequence"] for record in records]
    if present != listed:
        removed = sorted(set(listed) - set(present))
        added = sorted(set(present) - set(listed))
        if removed and not statement["filter"] and removed[-1] == size and not added:
            tail = [n for n in removed if n > (present[-1] if present else 0)]
            if tail:
                report.problem(
                    f"{_records(tail)} missing: the log Warden signed at #{size} held "
                    f"{size} records and the export ends at #{present[-1] if present else 0} "
                    "(the last records were cut off)"
                )
                removed = [n for n in removed if n not in tail]
        if removed:
            report.problem(
                f"{_records(removed)} missing: Warden's signed statement lists "
                f"{'it (a record' if len(removed) == 1 else 'them (records'} removed)"
            )
        if added:
            report.problem(
                f"{_records(added)} not among those Warden exported "
                f"({'a record' if len(added) == 1 else 'records'} added)"
            )
        if not removed and not added and report.ok:
            report.problem("The records are not in the order Warden exported them (reordered)")
        return leaves
    if int(statement["count"]) != len(records):
        report.problem(
            f"The export holds {len(records)} records, its signed statement {statement['count']}"
        )
    elif records_digest(leaves) != statement["digest"]:
        report.problem(
            "The records' content differs from what Warden signed: a record was edited and its "
            "leaf hash recomputed (their digest does not match the signed statement's)"
        )
    return leaves


def _check_document(
    document: Mapping[str, Any], statement: Mapping[str, Any], report: Report
) -> None:
    signed = statement.get("document") or {}
    found = evidence_sections(document)
    for name in sorted(set(signed) | set(found)):
        if name not in found:
            report.problem(f"The evidence's section {name!r} was removed")
        elif name not in signed:
            report.problem(f"The evidence's section {name!r} was added after Warden signed it")
        elif found[name] != signed[name]:
            report.problem(f"The evidence's section {name!r} was edited after Warden signed it")


def _left_out(sequences: str, size: int) -> str:
    spans, expected, gaps = parse_ranges(sequences), 1, []
    for first, last in spans:
        if first > expected:
            gaps.append((expected, first - 1))
        expected = last + 1
    if expected <= size:
        gaps.append((expected, size))
    shown = [f"#{a}" if a == b else f"#{a}-#{b}" for a, b in gaps[:6]]
    more = f" and {len(gaps) - 6} more ranges" if len(gaps) > 6 else ""
    return ", ".join(shown) + more


def _records(numbers: Sequence[int]) -> str:
    """ "Record #7" or "Records #7, #9-#12"."""
    return f"Record{'s' if len(numbers) > 1 else ''} {_spans(numbers)}"


def _spans(numbers: Sequence[int]) -> str:
    return ", ".join(f"#{part.replace('-', '-#')}" for part in sequence_ranges(numbers).split(","))


def describe_filter(exported_filter: Mapping[str, Any]) -> str:
    """A filter for people: "ticket INC-000042, since 2026-12-01"."""
    if not exported_filter:
        return "none (the whole log)"
    return ", ".join(f"{name} {value}" for name, value in exported_filter.items())


def _when(text: str) -> str:
    """2026-12-06T14:54:19Z as 2026-12-06 14:54:19 UTC."""
    return text.replace("T", " ").replace("Z", " UTC")


# -- the command ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verifier.py",
        description="Verify a Warden audit export (CSV, JSON, NDJSON) or a ticket's evidence "
        "JSON against Warden's published public key, without Warden.",
    )
    parser.add_argument("file", type=Path, help="the export or evidence JSON")
    parser.add_argument(
        "--public-key",
        type=Path,
        action="append",
        required=True,
        metavar="KEY.pem",
        help="Warden's public key (GET /api/v1/audit/public-key.pem); repeat for older keys",
    )
    args = parser.parse_args(argv)
    try:
        keys = [load_public_key(path) for path in args.public_key]
    except Unreadable as exc:
        print(f"Cannot verify: {exc}", file=sys.stderr)
        return UNVERIFIABLE
    report = verify_path(args.file, keys)
    for line in report.lines:
        print(line)
    for line in report.problems:
        print(f"{args.file.name}: {line}", file=sys.stderr)
    if report.status == TAMPERED:
        print(f"{args.file.name}: NOT VERIFIED: {problems(report)}", file=sys.stderr)
    return report.status


if __name__ == "__main__":
    sys.exit(main())
