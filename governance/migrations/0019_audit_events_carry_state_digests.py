"""Each audit event about a governed row carries the digest of the row's state
(governance/audit/state.py); the chain's HMAC covers it when it is not empty, so older
events verify as before.

SQLite adds the column by rebuilding the table, which drops its triggers: they are made
again here, as governance 0008 made them.
"""

from django.db import migrations, models

SQLITE = [
    "DROP TRIGGER IF EXISTS warden_audit_no_update",
    "DROP TRIGGER IF EXISTS warden_audit_no_delete",
    """CREATE TRIGGER warden_audit_no_update BEFORE UPDATE ON governance_auditevent
    WHEN NOT warden_audit_maintenance()
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER warden_audit_no_delete BEFORE DELETE ON governance_auditevent
    WHEN NOT warden_audit_maintenance()
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END""",
]


def sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("governance", "0018_audit_triggers_need_the_owner")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="object_state",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(sqlite_triggers, sqlite_triggers),
    ]
