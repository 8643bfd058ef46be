"""Proof an auditor checks alone: exports and evidence carry Warden's signed checkpoint, and
the offline verifier (one file: Python and `cryptography`) proves a full export complete, a
filtered one and a ticket's evidence record by record, and names what was tampered with."""

import ast
import base64
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import override_settings

from governance.audit import signing, verifier
from governance.audit.checkpoints import sign_checkpoint
from governance.audit.log import append_events, event, event_record
from governance.models import AuditCheckpoint, AuditEvent
from tests.governance.admin_pages import logged_in

VERIFIER = Path(verifier.__file__)


class Subject:
    """Something the events are about that is not a governed row (no state digest)."""

    def __init__(self, pk: int) -> None:
        self.pk = pk


@pytest.fixture
def log(db):
    """30 events, one transaction each, after the B that migrate recorded; every third
    about ticket INC-000002. Returns B."""
    base = AuditEvent.objects.count()
    for n in range(1, 31):
        ticket = "INC-000002" if n % 3 == 0 else "INC-000001"
        action = "ticket.opened" if n % 5 == 0 else "ticket.changed"
        with transaction.atomic():
            append_events(
                [
                    event(
                        "system",
                        action,
                        Subject(n),
                        f"change {n}",
                        ticket_id=ticket,
                        data={"n": n, "why": "a test", "fields": ["status"], "note": "é"},
                    )
                ]
            )
    return base


@pytest.fixture
def public_key(tmp_path):
    path = tmp_path / "warden-audit.pem"
    path.write_text(signing.public_key_pem())
    return path


def export(tmp_path, fmt: str, *options: str) -> Path:
    path = tmp_path / f"export.{fmt}"
    call_command("export_audit", "--format", fmt, "--output", str(path), *options)
    return path


def run_verifier(path: Path, key: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The verifier as an auditor runs it: a copy of the one file, alone in a folder, in an
    isolated Python (no PYTHONPATH, no current folder on the path): nothing of Warden."""
    alone = tmp_path / "auditor"
    alone.mkdir(exist_ok=True)
    shutil.copy(VERIFIER, alone / "verifier.py")
    return subprocess.run(
        [sys.executable, "-I", str(alone / "verifier.py"), str(path), "--public-key", str(key)],
        capture_output=True,
        text=True,
        cwd=alone,
    )


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_a_full_export_is_proven_complete_up_to_its_signed_checkpoint(
    log, tmp_path, public_key, fmt
):
    path = export(tmp_path, fmt)
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 0, result.stderr
    n = log + 30
    assert f"all {n} records #1-#{n} are complete and unaltered" in result.stdout
    assert f"signed at #{n}" in result.stdout


def test_a_filtered_export_is_proven_record_by_record_and_says_what_it_left_out(
    log, tmp_path, public_key
):
    path = export(tmp_path, "csv", "--ticket", "INC-000002")
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 0, result.stderr
    b = log
    assert f"Filtered export verified: 10 records of {b + 30}" in result.stdout
    assert "The export's filter: ticket INC-000002." in result.stdout
    assert f"Records #1-#{b + 2}, #{b + 4}-#{b + 5}, #{b + 7}-#{b + 8}" in result.stdout
    assert "not included because of the filter, not removed" in result.stdout


def ndjson_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in lines_of(path)]


def test_a_field_edited_is_named(log, tmp_path, public_key):
    path = export(tmp_path, "ndjson")
    lines = lines_of(path)
    record = json.loads(lines[log + 11])
    record["actor"] = "user:mallory"
    lines[log + 11] = json.dumps(record) + "\n"
    rewrite(path, lines)
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert f"#{log + 12}: its content is not what Warden wrote (a field was edited" in result.stderr


def test_a_field_edited_with_its_leaf_recomputed_does_not_add_up(log, tmp_path, public_key):
    path = export(tmp_path, "ndjson")
    lines = lines_of(path)
    record = json.loads(lines[log + 11])
    record["summary"] = "nothing happened"
    record["leaf_hash"] = verifier.leaf_hash(record).hex()
    lines[log + 11] = json.dumps(record) + "\n"
    rewrite(path, lines)
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert "a record was edited and its leaf hash recomputed" in result.stderr


def test_a_record_removed_in_the_middle_is_named(log, tmp_path, public_key):
    path = export(tmp_path, "ndjson")
    lines = lines_of(path)
    rewrite(path, lines[: log + 14] + lines[log + 15 :])
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert f"Record #{log + 15} missing" in result.stderr and "a record removed" in result.stderr


def test_the_last_records_cut_off_are_caught_without_any_option(log, tmp_path, public_key):
    path = export(tmp_path, "csv")
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))

    def write(kept):
        text = io.StringIO()
        csv.writer(text).writerows(kept)
        path.write_text(text.getvalue(), encoding="utf-8")

    write(rows[:-4] + rows[-1:])  # the proof row kept, the last three records cut
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert f"Records #{log + 28}-#{log + 30} missing" in result.stderr
    assert "the last records were cut off" in result.stderr
    write(rows[:-4])  # cut with the proof: nothing signed is left to vouch for it
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert f"No signed proof: the file ends at #{log + 27}" in result.stderr


def test_records_reordered_are_named(log, tmp_path, public_key):
    path = export(tmp_path, "ndjson")
    lines = lines_of(path)
    lines[log + 4], lines[log + 5] = lines[log + 5], lines[log + 4]
    rewrite(path, lines)
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert f"#{log + 5} comes after #{log + 6}: records reordered" in result.stderr


def test_a_record_removed_from_a_filtered_export_is_named(log, tmp_path, public_key):
    path = export(tmp_path, "ndjson", "--ticket", "INC-000002")
    lines = lines_of(path)
    rewrite(path, lines[:2] + lines[3:])  # the third of B+3, B+6, B+9, ...
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert f"Record #{log + 9} missing: Warden's signed statement lists it" in result.stderr


def test_a_wrong_public_key_is_named(log, tmp_path):
    path = export(tmp_path, "ndjson")
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = run_verifier(path, other, tmp_path)
    assert result.returncode == 1
    assert "not with the public key given" in result.stderr
    assert "a wrong public key" in result.stderr


def test_a_forged_checkpoint_is_refused(log, tmp_path, public_key):
    path = export(tmp_path, "ndjson")
    lines = lines_of(path)
    proof = json.loads(lines[-1])
    proof[verifier.PROOF_KEY]["checkpoint"]["size"] = log + 27  # "the log held fewer"
    lines[-1] = json.dumps(proof) + "\n"
    rewrite(path, lines)
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert f"The signed checkpoint #{log + 27} does not match its signature" in result.stderr


def test_a_checkpoint_signed_by_another_key_is_refused(log, tmp_path, public_key):
    """Whoever holds only the database (and the HMAC key) cannot sign a checkpoint."""
    path = export(tmp_path, "ndjson")
    lines = lines_of(path)
    proof = json.loads(lines[-1])[verifier.PROOF_KEY]
    forger = Ed25519PrivateKey.generate()
    for name, note in (("checkpoint", verifier.checkpoint_note), ("statement", None)):
        signed = proof[name]
        signed["key_id"] = json.loads(lines[-1])[verifier.PROOF_KEY][name]["key_id"]
        text = note(signed) if note else verifier.statement_note(signed)
        signed["signature"] = base64.b64encode(forger.sign(text)).decode()
    lines[-1] = json.dumps({verifier.PROOF_KEY: proof}) + "\n"
    rewrite(path, lines)
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert "does not match its signature: it was forged" in result.stderr


def test_the_csv_reads_in_words_beside_the_codes_and_its_words_are_checked(
    log, tmp_path, public_key
):
    path = export(tmp_path, "csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    opened = rows[log + 4]
    assert (opened["event"], opened["event code"]) == ("Ticket opened", "ticket.opened")
    assert "why: a test" in opened["details"] and "n: 5" in opened["details"]
    assert json.loads(opened["data (JSON)"])["n"] == 5
    # A word changed where people read, the code left alone: named.
    text = path.read_text(encoding="utf-8").replace("Ticket opened", "Ticket closed", 1)
    path.write_text(text, encoding="utf-8")
    result = run_verifier(path, public_key, tmp_path)
    assert result.returncode == 1
    assert (
        f"#{log + 5}: its event reads 'Ticket closed' but its code ticket.opened" in result.stderr
    )


def test_each_record_keeps_the_leaf_computed_when_it_was_appended(log):
    for row in AuditEvent.objects.all():
        record = event_record(row, verifier.RECORD_FIELDS)
        assert row.leaf_hash == verifier.leaf_hash(record).hex()


def test_a_checkpoint_is_signed_once_per_size_and_extends_the_last(log, public_key):
    first = sign_checkpoint()
    assert sign_checkpoint().pk == first.pk  # the log has not grown
    with transaction.atomic():
        append_events([event("system", "ticket.changed", Subject(99), "one more")])
    second = sign_checkpoint()
    assert (first.tree_size, second.tree_size) == (log + 30, log + 31)
    leaves = [bytes.fromhex(h) for h in AuditEvent.objects.values_list("leaf_hash", flat=True)]
    assert second.root_hash == verifier.root_of(leaves).hex()
    assert AuditCheckpoint.objects.count() == 2


def test_a_record_edited_in_the_database_is_not_signed(log):
    from governance.audit.checkpoints import CheckpointRefused
    from governance.audit.log import audit_maintenance

    with audit_maintenance():
        AuditEvent.objects.filter(sequence=log + 7).update(summary="forged")
    with pytest.raises(CheckpointRefused, match=f"#{log + 7}"):
        sign_checkpoint()
    assert not AuditCheckpoint.objects.exists()


def test_verify_audit_runs_the_offline_verifier(log, tmp_path, public_key):
    path = export(tmp_path, "ndjson", "--ticket", "INC-000001")
    out = io.StringIO()
    call_command("verify_audit", "--file", str(path), stdout=out)
    offline = run_verifier(path, public_key, tmp_path)
    assert out.getvalue() == offline.stdout  # the same code, the same words
    lines = lines_of(path)
    rewrite(path, lines[:3] + lines[4:])
    with pytest.raises(CommandError) as error:
        call_command("verify_audit", "--file", str(path), stderr=io.StringIO())
    assert error.value.returncode == 1 and "NOT VERIFIED" in str(error.value)


def test_the_verifier_imports_nothing_but_python_and_cryptography():
    tree = ast.parse(VERIFIER.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


def test_an_export_is_named_by_its_filter_and_period(log, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call_command("export_audit", "--ticket", "INC-000002", stderr=io.StringIO())
    call_command("export_audit", "--format", "ndjson", stderr=io.StringIO())
    call_command(
        "export_audit", "--since", "2026-12-01", "--until", "2026-12-06", stderr=io.StringIO()
    )
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names[0] == "warden-audit_all_2026-12-01_2026-12-06.csv"
    assert re.fullmatch(r"warden-audit_all_until-\d{4}-\d\d-\d\dT\d\d-\d\dZ\.ndjson", names[1])
    assert re.fullmatch(
        r"warden-audit_ticket-INC-000002_until-\d{4}-\d\d-\d\dT\d\d-\d\dZ\.csv", names[2]
    )


def test_the_admin_and_the_api_name_their_downloads(log, dave):
    browser = logged_in(dave)
    response = browser.get(
        "/admin/governance/auditevent/export/",
        {"action__exact": "ticket.opened", "export_format": "csv"},
    )
    assert re.search(
        r'filename="warden-audit_action-ticket.opened_until-[0-9T-]+Z\.csv"',
        response["Content-Disposition"],
    )
    response = browser.get("/api/v1/audit-events", {"format": "json", "ticket": "INC-000001"})
    assert 'filename="warden-audit_ticket-INC-000001_until-' in response["Content-Disposition"]


def test_the_public_key_and_the_verifier_are_published_to_anyone(log, client):
    answer = client.get("/api/v1/audit/public-key")
    assert answer.status_code == 200
    body = answer.json()
    assert body["key_id"] == signing.current_key_id() and body["algorithm"] == "Ed25519"
    assert body["public_key_pem"] == signing.public_key_pem()
    pem = client.get("/api/v1/audit/public-key.pem")
    assert pem.content.decode() == signing.public_key_pem()
    script = client.get("/api/v1/audit/verifier.py")
    assert script.status_code == 200 and script.content == VERIFIER.read_bytes()
    assert 'filename="verifier.py"' in script["Content-Disposition"]


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("", "WARDEN_AUDIT_SIGNING_KEY is not set"),
        ("/nonexistent/key.pem", "names /nonexistent/key.pem, which cannot be read"),
        ("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "not an"),
        ("rsa", "not an Ed25519 key"),
    ],
)
def test_the_signing_key_is_checked_at_start_up(value, named):
    if value == "rsa":
        value = (
            generate_private_key(65537, 2048)
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
    with override_settings(WARDEN_AUDIT_SIGNING_KEY=value):
        [error] = signing.check_signing_key(None)
    assert error.id == "warden.E004" and named in error.msg


def test_the_signing_key_may_be_given_as_pem_text():
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with override_settings(WARDEN_AUDIT_SIGNING_KEY=pem):
        assert signing.check_signing_key(None) == []
        assert signing.public_key_pem() != ""


@pytest.mark.parametrize("size", range(1, 20))
def test_the_tree_is_rfc_6962s_and_every_inclusion_proof_verifies(size):
    leaves = [verifier.node_hash(bytes([n]), b"leaf") for n in range(size)]

    def mth(items):  # RFC 6962 section 2.1, as written
        if len(items) == 1:
            return items[0]
        k = 1
        while k * 2 < len(items):
            k *= 2
        return verifier.node_hash(mth(items[:k]), mth(items[k:]))

    levels = verifier.tree_levels(leaves)
    assert levels[-1][0] == verifier.root_of(leaves) == mth(leaves)
    for index in range(size):
        path = verifier.inclusion_proof(levels, index)
        assert verifier.verify_inclusion(index, size, leaves[index], path, mth(leaves))
        if size > 1:
            other = (index + 1) % size
            assert not verifier.verify_inclusion(other, size, leaves[index], path, mth(leaves))


@pytest.mark.usefixtures("trusting_policies")
def test_a_tickets_evidence_json_is_proven_and_its_sections_checked(
    agent, dave, tmp_path, public_key
):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    ticket = result["ticket_id"]
    response = logged_in(dave).get(f"/api/v1/tickets/{ticket}/evidence")
    path = tmp_path / f"evidence-{ticket}.json"
    path.write_bytes(response.content)
    events = AuditEvent.objects.filter(ticket_id=ticket).count()
    size = response.json()["audit_proof"]["checkpoint"]["size"]

    verified = run_verifier(path, public_key, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert f"Evidence of ticket {ticket} verified: its {events} audit records of {size}" in (
        verified.stdout
    )
    assert f"The evidence's filter: ticket {ticket}." in verified.stdout

    document = json.loads(path.read_text())
    document["decisions"][0]["reasons"] = ["a person said so"]
    path.write_text(json.dumps(document))
    tampered = run_verifier(path, public_key, tmp_path)
    assert tampered.returncode == 1
    assert "The evidence's section 'decisions' was edited after Warden signed it" in (
        tampered.stderr
    )

    document = response.json()
    first = document["audit_proof"]["records"][0]
    first["summary"] = "nothing happened"
    path.write_text(json.dumps(document))
    tampered = run_verifier(path, public_key, tmp_path)
    assert tampered.returncode == 1
    assert f"#{first['sequence']}: its content is not what Warden wrote" in tampered.stderr


def test_a_tail_cut_with_its_head_after_a_checkpoint_is_not_signed_again(log):
    from governance.audit.checkpoints import CheckpointRefused
    from governance.audit.log import audit_maintenance
    from governance.models import AuditChainHead

    sign_checkpoint()
    cut = AuditEvent.objects.get(sequence=log + 28)
    with audit_maintenance():
        AuditEvent.objects.filter(sequence__gt=log + 28).delete()
        AuditChainHead.objects.filter(pk=1).update(sequence=cut.sequence, hash=cut.hash)
    with pytest.raises(CheckpointRefused, match=f"before the checkpoint signed at #{log + 30}"):
        sign_checkpoint()


def test_records_still_verify_after_a_dump_and_load(log):
    """A backup through Django's dumpdata/loaddata keeps what the leaves cover: the JSON
    encoder keeps milliseconds, and Warden records time to the millisecond."""
    from django.core import serializers

    dumped = serializers.serialize("json", AuditEvent.objects.order_by("sequence"))
    for loaded in serializers.deserialize("json", dumped):
        row = loaded.object
        assert verifier.leaf_hash(event_record(row, verifier.RECORD_FIELDS)).hex() == (
            row.leaf_hash
        ), f"#{row.sequence}"
