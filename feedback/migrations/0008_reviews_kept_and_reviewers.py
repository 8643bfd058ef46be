"""Post-action reviews are never deleted, and supervisors and approvers make them.

1. Triggers refuse DELETE of a review (and TRUNCATE on PostgreSQL) outside
   governance.audit.log.audit_maintenance(), the switch the audit log's triggers use: only
   the test suite's flush empties the table.
2. The review permission (feedback.review_postactionreview) and viewing reviews for
   supervisors and approvers; compliance views them.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

POSTGRES = """
CREATE OR REPLACE FUNCTION warden_review_kept() RETURNS trigger AS $$
BEGIN
    IF current_setting('warden.audit_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'post-action reviews are never deleted: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER warden_review_no_delete BEFORE DELETE ON feedback_postactionreview
    FOR EACH ROW WHEN (current_setting('warden.audit_maintenance', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION warden_review_kept();
CREATE TRIGGER warden_review_no_truncate BEFORE TRUNCATE ON feedback_postactionreview
    FOR EACH STATEMENT EXECUTE FUNCTION warden_review_kept();
"""
POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS warden_review_no_delete ON feedback_postactionreview;
DROP TRIGGER IF EXISTS warden_review_no_truncate ON feedback_postactionreview;
DROP FUNCTION IF EXISTS warden_review_kept();
"""
# warden_audit_maintenance() is registered on every connection Django opens
# (governance/apps.py).
SQLITE = """CREATE TRIGGER warden_review_no_delete BEFORE DELETE ON feedback_postactionreview
    WHEN NOT warden_audit_maintenance()
    BEGIN SELECT RAISE(ABORT, 'post-action reviews are never deleted: DELETE refused'); END"""
SQLITE_REVERSE = "DROP TRIGGER IF EXISTS warden_review_no_delete"

REVIEWERS = {
    "supervisors": ("review_postactionreview", "view_postactionreview"),
    "approvers": ("review_postactionreview", "view_postactionreview"),
    "compliance": ("view_postactionreview",),
}


def install_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)  # its % are PL/pgSQL, not placeholders
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE)


def remove_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_REVERSE)


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions are normally made after migrate
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in REVIEWERS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="feedback", codename__in=codenames)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0007_post_action_reviews"),
        ("governance", "0003_seed_roles_and_chain"),
    ]

    operations = [
        migrations.RunPython(install_triggers, remove_triggers),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
