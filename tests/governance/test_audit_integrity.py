"""Issue 20, item 8: the audit log cannot be switched off from a connection, a missing head
is reported, and a record's data is read one way only.

The tamperings are done as the issue did them: by SQL on the application's connection (or a
role that may write rows), without the table owner's rights or WARDEN_AUDIT_KEY.
"""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from governance.audit.log import audit_maintenance, verify_audit_log
from governance.models import AuditChainHead, AuditEvent

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="PostgreSQL's roles and session settings"
)


@pytest.fixture
def log(agent) -> list[AuditEvent]:
    agent.post_metrics(agent.sample("disk"))
    rows = list(AuditEvent.objects.order_by("sequence"))
    assert len(rows) > 3
    return rows


def refused(sql: str, *params) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)


@postgres_only
def test_setting_warden_audit_maintenance_no_longer_lets_a_connection_delete_events(log):
    # The finding: set_config('warden.audit_maintenance', 'on') passed the triggers.
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('warden.audit_maintenance', 'on', false)")
        cursor.execute("SET warden.audit_maintenance = 'on'")
    try:
        refused("DELETE FROM governance_auditevent WHERE sequence >= %s", log[-3].sequence)
        refused("UPDATE governance_auditevent SET summary = 'nothing' WHERE id = %s", log[0].pk)
        refused("TRUNCATE governance_auditevent CASCADE")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET warden.audit_maintenance")
    assert AuditEvent.objects.count() == len(log)
    assert verify_audit_log().intact


@postgres_only
def test_a_role_that_may_write_rows_but_does_not_own_the_log_cannot_disable_its_triggers(log):
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE warden_app_test NOLOGIN")
        cursor.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON governance_auditevent, "
            "governance_auditchainhead, feedback_postactionreview TO warden_app_test"
        )
        cursor.execute("SET ROLE warden_app_test")
    try:
        for statement in (
            "ALTER TABLE governance_auditevent DISABLE TRIGGER USER",
            "ALTER TABLE governance_auditevent DISABLE TRIGGER warden_audit_no_update_delete",
            "SET session_replication_role = replica",
        ):
            with (
                pytest.raises(DatabaseError),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(statement)
        with pytest.raises(DatabaseError), audit_maintenance():
            pass  # the maintenance context needs the owner too
        refused("DELETE FROM governance_auditevent WHERE id = %s", log[-1].pk)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert AuditEvent.objects.count() == len(log)


def test_sqlites_maintenance_switch_cannot_be_flipped_by_sql(log):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's guard function")
    with connection.cursor() as cursor:
        # A connection may define its own function of that name; Django's connection
        # keeps the one this process registered, which SQL cannot set.
        cursor.execute("SELECT warden_audit_maintenance()")
        assert cursor.fetchone()[0] == 0
    refused("DELETE FROM governance_auditevent WHERE id = %s", log[-1].pk)


def test_a_deleted_head_row_is_reported_broken_in_one_line_not_a_traceback(log, client, settings):
    from remediation.tasks import sweep

    AuditChainHead.objects.filter(pk=1).delete()

    report = verify_audit_log()
    assert not report.intact
    assert "head row is missing" in report.line
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit")
    assert broken.value.returncode == 1
    assert str(broken.value).startswith("Audit chain BROKEN")
    assert "\n" not in str(broken.value)
    # The sweeper and /metrics publish #0, which no earlier published head matches.
    assert sweep()["audit_head"].startswith("0:")
    settings.WARDEN_METRICS_TOKEN = "scrape"
    metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape")
    assert metrics.status_code == 200
    assert "warden_audit_head_sequence 0.0" in metrics.content.decode()


def test_after_the_head_row_is_deleted_a_governed_write_answers_503_and_changes_nothing(
    log, agent, alice, api
):
    supervisor = api(alice)
    AuditChainHead.objects.filter(pk=1).delete()
    events = AuditEvent.objects.count()

    response = supervisor.post(
        "/api/v1/tickets",
        {
            "ticket_id": "OPS-9",
            "title": "disk full",
            "description": "97%",
            "category": "memory",
            "host": "web-01",
        },
    )
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "audit_head_missing"
    assert AuditEvent.objects.count() == events
    assert not AuditChainHead.objects.exists()  # nothing recreated silently


def test_after_the_head_row_is_deleted_an_admin_change_is_refused_with_a_message(log, client):
    from django.contrib.auth.models import User

    from governance.models import Pause

    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    AuditChainHead.objects.filter(pk=1).delete()

    response = client.post(
        "/admin/governance/pause/add/",
        {"scope": "all", "reason": "incident", "change_reason": "incident"},
        follow=True,
    )
    assert response.status_code == 200
    assert "chain head is missing" in response.content.decode()
    assert not Pause.objects.exists()


def test_a_data_field_with_a_duplicated_key_is_refused_by_verify_audit(log):
    if connection.vendor != "sqlite":
        pytest.skip("jsonb keeps one value per key: PostgreSQL cannot store the forgery")
    victim = next(row for row in log if row.data)
    key = sorted(victim.data)[0]
    # The forged value first, then the real one: Python reads the real one.
    forged = f'{{"{key}": "forged", {json.dumps(victim.data)[1:]}'
    with audit_maintenance(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_auditevent SET data = %s WHERE id = %s", [forged, victim.pk]
        )
        cursor.execute(
            "SELECT json_extract(data, %s) FROM governance_auditevent WHERE id = %s",
            [f"$.{key}", victim.pk],
        )
        assert cursor.fetchone()[0] == "forged"  # what a SQL reader sees
    assert AuditEvent.objects.get(pk=victim.pk).data == victim.data  # what Python sees

    report = verify_audit_log()
    assert not report.intact
    assert report.first_broken_sequence == victim.sequence
    assert "duplicated key" in report.problem
    with pytest.raises(CommandError, match="duplicated key"):
        call_command("verify_audit")
