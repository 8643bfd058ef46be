"""Compliance takes the audit trail away: the export permission, for compliance and supervisors
(compliance stays view-only otherwise)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant_export(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions are normally made after migrate
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    export = Permission.objects.get(
        content_type__app_label="governance", codename="export_auditevent"
    )
    for name in ("compliance", "supervisors"):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(export)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0009_decisions_bind_runbook_versions"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="auditevent",
            options={
                "ordering": ["sequence"],
                "permissions": [("export_auditevent", "Can export the audit trail")],
            },
        ),
        migrations.RunPython(grant_export, migrations.RunPython.noop),
    ]
