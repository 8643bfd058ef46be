"""Signed audit checkpoints, and each record's leaf in the Merkle tree they sign
(governance/audit/verifier.py): the existing records get theirs here.

The log refuses UPDATE (governance 0008, 0018): the backfill sets its triggers aside for
this transaction only (PostgreSQL: the migration runs as the tables' owner), and SQLite's,
which a table rebuild may drop, are made again as governance 0019 made them.
"""

from django.db import migrations, models

from governance.audit.verifier import RECORD_FIELDS, leaf_hash

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS warden_audit_no_update",
    "DROP TRIGGER IF EXISTS warden_audit_no_delete",
]
SQLITE_CREATE = [
    """CREATE TRIGGER warden_audit_no_update BEFORE UPDATE ON governance_auditevent
    WHEN NOT warden_audit_maintenance()
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER warden_audit_no_delete BEFORE DELETE ON governance_auditevent
    WHEN NOT warden_audit_maintenance()
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END""",
]


def backfill_leaves(apps, schema_editor):
    connection = schema_editor.connection
    AuditEvent = apps.get_model("governance", "AuditEvent")
    if connection.vendor == "sqlite":
        for statement in SQLITE_DROP:
            schema_editor.execute(statement)
    elif connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER USER")
    for row in AuditEvent.objects.filter(leaf_hash="").order_by("sequence").iterator(2000):
        record = {name: getattr(row, name) for name in RECORD_FIELDS}
        record["created_at"] = row.created_at.isoformat()
        AuditEvent.objects.filter(pk=row.pk).update(leaf_hash=leaf_hash(record).hex())
    if connection.vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement)
    elif connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER USER")


def sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_DROP + SQLITE_CREATE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0023_outbox_readers"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tree_size", models.PositiveBigIntegerField(unique=True)),
                ("root_hash", models.CharField(max_length=64)),
                ("head_hash", models.CharField(max_length=64)),
                ("signed_at", models.DateTimeField()),
                ("key_id", models.CharField(max_length=32)),
                ("public_key", models.CharField(max_length=64)),
                ("signature", models.CharField(max_length=100)),
                ("frontier", models.JSONField(default=list)),
            ],
            options={
                "ordering": ["-tree_size"],
            },
        ),
        migrations.AddField(
            model_name="auditevent",
            name="leaf_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(backfill_leaves, sqlite_triggers),
    ]
