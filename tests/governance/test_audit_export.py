"""Compliance takes the record away: the audit trail exported (command, API, admin), each
record with its links and Warden's signed proof, and an export verified offline, catching
what was cut or edited (tests/governance/test_audit_proof.py has the verifier's cases)."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from governance.models import AuditEvent
from tests.governance.admin_pages import logged_in

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


@pytest.fixture
def trail(agent):
    """A few tickets' worth of events: an automatic fix and a firewall change waiting."""
    agent.post_metrics(agent.sample("disk"))
    agent.post_metrics(agent.sample("firewall", disk_usage=97.0))
    assert AuditEvent.objects.count() >= 6
    return AuditEvent.objects.order_by("sequence")


def export(tmp_path, fmt: str, *options: str) -> str:
    path = tmp_path / f"audit.{fmt}"
    call_command("export_audit", "--format", fmt, "--output", str(path), *options)
    return str(path)


def verify(path: str, *options: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", "--file", path, *options, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_an_export_verifies_offline_in_every_format(trail, tmp_path, fmt):
    path = export(tmp_path, fmt)
    last = trail.last()
    assert f"all {last.sequence} records #1-#{last.sequence} are complete" in verify(path)


def test_every_record_carries_its_sequence_and_both_links(trail, tmp_path):
    text = Path(export(tmp_path, "csv")).read_text()
    *rows, proof = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [int(row["sequence"]) for row in rows] == list(trail.values_list("sequence", flat=True))
    for row, event in zip(rows, trail, strict=True):
        assert (row["previous hash"], row["hash"]) == (event.prev_hash, event.hash)
        assert json.loads(row["data (JSON)"]) == event.data
        assert row["leaf hash"] == event.leaf_hash
    assert proof["sequence"] == "warden_audit_proof"  # the last row: the signed proof


def edited(line: str) -> str:
    record = json.loads(line)
    record["summary"] += " (nothing to see)"
    return json.dumps(record) + "\n"


def rewrite(path: str, change) -> None:
    with open(path) as handle:
        lines = handle.readlines()
    with open(path, "w") as handle:
        handle.writelines(change(lines))


@pytest.mark.parametrize(
    ("tampering", "named"),
    [
        (lambda lines: [lines[0], edited(lines[1]), *lines[2:]], "#2"),
        (lambda lines: [lines[0], *lines[2:]], "Record #2 missing"),
        (lambda lines: lines[1:], "Record #1 missing"),
    ],
    ids=["edited", "second-removed", "first-removed"],
)
def test_a_tampered_export_fails_naming_the_first_bad_sequence(trail, tmp_path, tampering, named):
    path = export(tmp_path, "ndjson")
    rewrite(path, tampering)
    errors = io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command("verify_audit", "--file", path, stderr=errors)
    assert error.value.returncode == 1
    assert named in errors.getvalue()


def test_a_cut_tail_fails_without_a_published_head(trail, tmp_path):
    path = export(tmp_path, "ndjson")
    rewrite(path, lambda lines: [*lines[:-2], lines[-1]])  # the last record cut, the proof kept
    last = trail.last()
    errors = io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command("verify_audit", "--file", path, stderr=errors)
    assert error.value.returncode == 1
    assert f"Record #{last.sequence} missing" in errors.getvalue()
    assert "the last records were cut off" in errors.getvalue()


def test_a_filtered_export_holds_only_the_ticket_and_its_records_are_authentic(trail, tmp_path):
    ticket = trail.exclude(ticket_id="").first().ticket_id
    path = export(tmp_path, "ndjson", "--ticket", ticket)
    *records, _proof = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert records and {r["ticket_id"] for r in records} == {ticket}
    assert all(r["proof"] for r in records)  # each with its inclusion proof
    assert "Filtered export verified" in verify(path)


def test_bad_filters_exit_with_one_line_naming_the_field(db, tmp_path):
    with pytest.raises(CommandError, match="since: give an ISO 8601"):
        export(tmp_path, "csv", "--since", "yesterday-ish")


def test_compliance_pages_through_the_trail_and_downloads_it(trail, dave):
    browser = logged_in(dave)
    page = browser.get("/api/v1/audit-events", {"limit": 2})
    assert page.status_code == 200
    body = page.json()
    assert [e["sequence"] for e in body["results"]] == [1, 2]
    assert body["results"][0]["hash"] == trail.first().hash
    second = browser.get(body["next"])
    assert [e["sequence"] for e in second.json()["results"]] == [3, 4]

    download = browser.get("/api/v1/audit-events", {"format": "ndjson", "action": "ticket"})
    assert download.status_code == 200
    *lines, proof = b"".join(download.streaming_content).decode().splitlines()
    assert lines and all(json.loads(line)["action"].startswith("ticket.") for line in lines)
    assert json.loads(proof)["warden_audit_proof"]["statement"]["filter"] == {"action": "ticket"}


def test_a_bad_filter_is_a_400_naming_it(trail, dave):
    response = logged_in(dave).get("/api/v1/audit-events", {"until": "soon"})
    assert response.status_code == 400
    assert "until" in response.json()["error"]["fields"]


def test_approvers_read_but_do_not_export_and_staff_without_permissions_do_neither(trail, bob):
    approver = logged_in(bob)
    assert approver.get("/api/v1/audit-events").status_code == 200
    assert approver.get("/api/v1/audit-events", {"format": "csv"}).status_code == 403
    nobody = logged_in(User.objects.create_user("eve", is_staff=True))
    assert nobody.get("/api/v1/audit-events").status_code == 403


def test_the_admin_exports_the_filtered_list(trail, dave, bob):
    browser = logged_in(dave)
    listing = browser.get("/admin/governance/auditevent/", {"action__exact": "ticket.opened"})
    assert b"Export CSV" in listing.content
    response = browser.get(
        "/admin/governance/auditevent/export/",
        {"action__exact": "ticket.opened", "export_format": "csv"},
    )
    assert response.status_code == 200
    *rows, _proof = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert len(rows) == trail.filter(action="ticket.opened").count() >= 2
    assert {row["event"] for row in rows} == {"Ticket opened"}
    assert logged_in(bob).get("/admin/governance/auditevent/export/").status_code == 403
    assert b"Export CSV" not in logged_in(bob).get("/admin/governance/auditevent/").content
