"""The audit log keyed and append-only.

1. Existing links were plain SHA-256: they are verified as such (a broken chain
   stops the migration rather than being laundered), then re-linked with the HMAC
   keyed by WARDEN_AUDIT_KEY.
2. Triggers refuse UPDATE, DELETE and TRUNCATE (PostgreSQL) and UPDATE and DELETE
   (SQLite) of the log, outside governance.audit.log.audit_maintenance().
"""

import hashlib

from django.conf import settings
from django.db import migrations

POSTGRES = """
CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF current_setting('warden.audit_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER warden_audit_no_update_delete BEFORE UPDATE OR DELETE ON governance_auditevent
    FOR EACH ROW WHEN (current_setting('warden.audit_maintenance', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION warden_audit_append_only();
CREATE TRIGGER warden_audit_no_truncate BEFORE TRUNCATE ON governance_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_append_only();
"""
# Row triggers skip the function in maintenance (WHEN); the TRUNCATE trigger asks in the
# function, where RETURN NULL lets the statement go on (a statement trigger's result is
# ignored).

POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS warden_audit_no_update_delete ON governance_auditevent;
DROP TRIGGER IF EXISTS warden_audit_no_truncate ON governance_auditevent;
DROP FUNCTION IF EXISTS warden_audit_append_only();
"""

# warden_audit_maintenance() is registered on every connection Django opens
# (governance/apps.py); a connection without it (the sqlite3 shell) fails the
# trigger, which refuses the change as well.
SQLITE = [
    """CREATE TRIGGER warden_audit_no_update BEFORE UPDATE ON governance_auditevent
    WHEN NOT warden_audit_maintenance()
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER warden_audit_no_delete BEFORE DELETE ON governance_auditevent
    WHEN NOT warden_audit_maintenance()
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS warden_audit_no_update",
    "DROP TRIGGER IF EXISTS warden_audit_no_delete",
]


def rekey(apps, schema_editor):
    from governance.audit.log import GENESIS_HASH, chain_hash, event_content

    AuditEvent = apps.get_model("governance", "AuditEvent")
    AuditChainHead = apps.get_model("governance", "AuditChainHead")
    head = AuditChainHead.objects.filter(pk=1).first()
    rows = list(AuditEvent.objects.order_by("sequence"))
    prev_old, prev_new = GENESIS_HASH, GENESIS_HASH
    for row in rows:
        content = event_content(row)
        if row.prev_hash != prev_old or (
            hashlib.sha256((prev_old + content).encode()).hexdigest() != row.hash
        ):
            raise RuntimeError(
                f"audit chain broken at #{row.sequence} before re-keying: not migrating "
                "(verify it with the previous release)"
            )
        prev_old = row.hash
        row.prev_hash = prev_new
        row.hash = prev_new = chain_hash(prev_new, row, settings.WARDEN_AUDIT_KEY)
        row.save(update_fields=["prev_hash", "hash"])
    if head is not None and rows:
        if head.sequence != rows[-1].sequence or head.hash != prev_old:
            raise RuntimeError("audit chain head does not match the log: not migrating")
        head.hash = prev_new
        head.save(update_fields=["hash"])


def install_triggers(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)  # its % are PL/pgSQL, not placeholders
    elif connection.vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement)


def remove_triggers(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE, params=None)
    elif connection.vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("governance", "0007_database_checks")]

    operations = [
        migrations.RunPython(rekey, migrations.RunPython.noop),
        migrations.RunPython(install_triggers, remove_triggers),
    ]
