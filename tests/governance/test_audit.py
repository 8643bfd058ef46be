"""The audit trail: append-only in the database, and every tampering found and named.

The tamperings are done as an attacker with the database's owner rights would: the
append-only triggers set aside (audit_maintenance), but without WARDEN_AUDIT_KEY.
"""

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from governance.audit.log import GENESIS_HASH, audit_maintenance, chain_hash, verify_audit_log
from governance.models import AuditChainHead, AuditEvent

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

ATTACKERS_KEY = "a guess at the key, or none at all"


@pytest.fixture
def log(agent, other_agent) -> list[AuditEvent]:
    """A real flow's events: two hosts' problems opened, decided and acted on."""
    agent.post_metrics(agent.sample("disk"))
    other_agent.post_metrics(other_agent.sample("dns"))
    rows = list(AuditEvent.objects.order_by("sequence"))
    assert len(rows) > 6
    return rows


def broken_at(report) -> tuple[int | None, str]:
    assert not report.intact, report
    return report.first_broken_sequence, report.problem


def test_a_flow_leaves_an_intact_chain_up_to_its_head(log):
    report = verify_audit_log()
    assert report.intact, report.line
    head = AuditChainHead.objects.get()
    assert report.checked == len(log)
    assert (report.head_sequence, report.head_hash) == (head.sequence, head.hash)
    assert verify_audit_log(expected=(head.sequence, head.hash)).intact


def test_links_are_keyed_so_a_plain_hash_does_not_verify(log):
    first = log[0]
    assert first.hash == chain_hash(GENESIS_HASH, first)
    assert first.hash != chain_hash(GENESIS_HASH, first, key=ATTACKERS_KEY)


def test_an_edited_summary_is_named(log):
    victim = next(row for row in log if row.action == "decision.made")
    with audit_maintenance():
        AuditEvent.objects.filter(pk=victim.pk).update(summary="AUTO_HEAL because I said so")
    sequence, problem = broken_at(verify_audit_log())
    assert sequence == victim.sequence
    assert "does not match its HMAC" in problem


def test_an_edited_actor_is_named(log):
    victim = log[3]
    with audit_maintenance():
        AuditEvent.objects.filter(pk=victim.pk).update(actor="user:somebody-else")
    assert broken_at(verify_audit_log())[0] == victim.sequence


def test_a_deleted_middle_event_is_named(log):
    victim = log[2]
    with audit_maintenance():
        AuditEvent.objects.filter(pk=victim.pk).delete()
    sequence, problem = broken_at(verify_audit_log())
    assert sequence == victim.sequence
    assert "missing (deleted)" in problem


def test_an_inserted_event_with_a_wrong_hash_is_named(log):
    head = AuditChainHead.objects.get()
    forged = forge(head.sequence + 1, prev_hash=head.hash, hash="f" * 64)
    sequence, _ = broken_at(verify_audit_log())
    assert sequence == forged.sequence


def test_the_last_two_events_deleted_are_named(log):
    with audit_maintenance():
        AuditEvent.objects.filter(sequence__gte=log[-2].sequence).delete()
    sequence, problem = broken_at(verify_audit_log())
    assert sequence == log[-2].sequence
    assert f"#{log[-2].sequence}-#{log[-1].sequence} missing" in problem


def test_an_event_appended_with_a_computed_hash_is_named(log):
    head = AuditChainHead.objects.get()
    row = AuditEvent(
        sequence=head.sequence + 1,
        created_at=log[-1].created_at,
        actor="user:mallory",
        action="approval.approved",
        object_type="ApprovalRequest",
        object_id="1",
        summary="approved",
        data={},
        prev_hash=head.hash,
    )
    row.hash = chain_hash(head.hash, row, key=ATTACKERS_KEY)
    forge_row(row)
    # ... even with the head moved along, as a careful attacker would
    AuditChainHead.objects.filter(pk=1).update(sequence=row.sequence, hash=row.hash)
    sequence, problem = broken_at(verify_audit_log())
    assert sequence == row.sequence
    assert "without Warden's key" in problem


def test_an_event_edited_with_every_later_hash_recomputed_is_named(log):
    victim = log[2]
    rows = log[2:]
    with audit_maintenance():
        prev_hash = log[1].hash
        for row in rows:
            if row.pk == victim.pk:
                row.summary = "nothing happened here"
            row.prev_hash = prev_hash
            row.hash = prev_hash = chain_hash(prev_hash, row, key=ATTACKERS_KEY)
            row.save()
    AuditChainHead.objects.filter(pk=1).update(hash=prev_hash)
    sequence, _ = broken_at(verify_audit_log())
    assert sequence == victim.sequence


def test_a_tail_cut_with_its_head_shows_against_the_published_head(log):
    published = (log[-1].sequence, log[-1].hash)
    with audit_maintenance():
        AuditEvent.objects.filter(sequence__gte=log[-2].sequence).delete()
    AuditChainHead.objects.filter(pk=1).update(sequence=log[-3].sequence, hash=log[-3].hash)

    assert verify_audit_log().intact  # consistent inside the database ...
    sequence, problem = broken_at(verify_audit_log(expected=published))  # ... not outside it
    assert sequence == published[0]
    assert "past the log's end" in problem


def test_the_database_refuses_to_change_or_delete_the_log(log):
    for change in (
        lambda: AuditEvent.objects.filter(pk=log[0].pk).update(summary="rewritten"),
        lambda: AuditEvent.objects.filter(pk=log[0].pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()
    if connection.vendor == "postgresql":
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("TRUNCATE governance_auditevent CASCADE")
    assert AuditEvent.objects.count() == len(log)
    assert verify_audit_log().intact


def test_verify_audit_exits_0_when_intact_and_1_naming_the_first_bad_sequence(log, capsys):
    call_command("verify_audit")
    assert "intact" in capsys.readouterr().out

    with audit_maintenance():
        AuditEvent.objects.filter(pk=log[4].pk).update(object_id="999")
    with pytest.raises(CommandError) as refused:
        call_command("verify_audit")
    assert refused.value.returncode == 1
    assert f"#{log[4].sequence}" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_head_is_published_outside_the_database(log, client, settings, caplog):
    from remediation.tasks import sweep

    head = AuditChainHead.objects.get()
    with caplog.at_level("INFO", logger="warden.audit"):
        report = sweep()
    assert report["audit_head"] == f"{head.sequence}:{head.hash}"
    assert f"audit checkpoint: head #{head.sequence} {head.hash}" in caplog.text

    settings.WARDEN_METRICS_TOKEN = "scrape"
    metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape").content.decode()
    assert f"warden_audit_head_sequence {head.sequence}.0" in metrics
    assert f'warden_audit_head{{hash="{head.hash}"}} {head.sequence}.0' in metrics


def test_verify_audit_refuses_a_malformed_published_head(log):
    with pytest.raises(CommandError, match="SEQUENCE:HASH"):
        call_command("verify_audit", expect="12:not-a-hash")


def test_one_request_appends_its_events_in_one_run_of_sequence_numbers(agent):
    agent.post_metrics(agent.sample())  # healthy: nothing audited
    assert not AuditEvent.objects.filter(action__startswith="ticket.").exists()
    agent.post_metrics(agent.sample("cpu"))
    sequences = list(AuditEvent.objects.values_list("sequence", flat=True))
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))


def forge(sequence: int, prev_hash: str, hash: str) -> AuditEvent:
    row = AuditEvent(
        sequence=sequence,
        created_at=AuditEvent.objects.order_by("-sequence").first().created_at,
        actor="system",
        action="ticket.resolved",
        object_type="Ticket",
        object_id="1",
        summary="resolved",
        data={},
        prev_hash=prev_hash,
        hash=hash,
    )
    return forge_row(row)


def forge_row(row: AuditEvent) -> AuditEvent:
    row.save(force_insert=True)  # inserting is what the log allows anyone
    return row
