"""Post-action reviews are kept whatever the session says.

Feedback 0008's triggers let a connection that set `warden.audit_maintenance = 'on'`
delete reviews. These refuse DELETE and TRUNCATE always: setting them aside takes the
table's owner (`ALTER TABLE ... DISABLE TRIGGER`), which the application's role is not
in production (docs/operators.md).
"""

from django.db import migrations

POSTGRES = """
CREATE OR REPLACE FUNCTION warden_review_kept() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'post-action reviews are never deleted: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS warden_review_no_delete ON feedback_postactionreview;
CREATE TRIGGER warden_review_no_delete BEFORE DELETE ON feedback_postactionreview
    FOR EACH ROW EXECUTE FUNCTION warden_review_kept();
"""

POSTGRES_REVERSE = """
CREATE OR REPLACE FUNCTION warden_review_kept() RETURNS trigger AS $$
BEGIN
    IF current_setting('warden.audit_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'post-action reviews are never deleted: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS warden_review_no_delete ON feedback_postactionreview;
CREATE TRIGGER warden_review_no_delete BEFORE DELETE ON feedback_postactionreview
    FOR EACH ROW WHEN (current_setting('warden.audit_maintenance', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION warden_review_kept();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)  # its % are PL/pgSQL, not placeholders


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE, params=None)


class Migration(migrations.Migration):
    dependencies = [("feedback", "0008_reviews_kept_and_reviewers")]

    operations = [migrations.RunPython(forward, backward)]
