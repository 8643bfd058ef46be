"""The audit log's append-only triggers no longer ask a session setting.

Governance 0008's triggers let any connection pass them by setting
`warden.audit_maintenance = 'on'`, which every role that may write rows can do. These
refuse UPDATE, DELETE and TRUNCATE whatever the session says: setting them aside takes
`ALTER TABLE ... DISABLE TRIGGER`, which only the table's owner (or a superuser) may run,
and the application's role does not own the tables in production (docs/operators.md).
SQLite keeps asking warden_audit_maintenance(), a function only this process registers.
"""

from django.db import migrations

POSTGRES = """
CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS warden_audit_no_update_delete ON governance_auditevent;
CREATE TRIGGER warden_audit_no_update_delete BEFORE UPDATE OR DELETE ON governance_auditevent
    FOR EACH ROW EXECUTE FUNCTION warden_audit_append_only();
"""
# The TRUNCATE trigger of 0008 stays; it calls the function replaced above.

POSTGRES_REVERSE = """
CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF current_setting('warden.audit_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS warden_audit_no_update_delete ON governance_auditevent;
CREATE TRIGGER warden_audit_no_update_delete BEFORE UPDATE OR DELETE ON governance_auditevent
    FOR EACH ROW WHEN (current_setting('warden.audit_maintenance', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION warden_audit_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)  # its % are PL/pgSQL, not placeholders


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE, params=None)


class Migration(migrations.Migration):
    dependencies = [("governance", "0017_notices_of_held_work_and_reviews")]

    operations = [migrations.RunPython(forward, backward)]
