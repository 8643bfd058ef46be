"""Reading is scoped like writing: the whole audit trail is for the people's roles
(supervisors, approvers, compliance); a role without this permission (integrators) reads
through view_auditevent only the events of the tickets it opened."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

WHOLE_TRAIL_ROLES = ("supervisors", "approvers", "compliance")


def grant_whole_trail(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions are normally made after migrate
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    whole = Permission.objects.get(
        content_type__app_label="governance", codename="view_whole_auditevent"
    )
    for name in WHOLE_TRAIL_ROLES:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(whole)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0019_audit_events_carry_state_digests"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="auditevent",
            options={
                "ordering": ["sequence"],
                "permissions": [
                    ("export_auditevent", "Can export the audit trail"),
                    ("view_whole_auditevent", "Can read the whole audit trail"),
                ],
            },
        ),
        migrations.RunPython(grant_whole_trail, migrations.RunPython.noop),
    ]
