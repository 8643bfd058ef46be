"""The roles see triage model versions as they see severity model versions: supervisors
hold every permission on them, approvers and compliance view them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MODELS = ("triagemodelversion", "historicaltriagemodelversion")


def grant(apps, schema_editor):
    # Permissions are normally made after migrate; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(
        content_type__app_label="scoring", content_type__model__in=MODELS
    )
    for name, permissions in (
        ("supervisors", ours),
        ("approvers", ours.filter(codename__startswith="view_")),
        ("compliance", ours.filter(codename__startswith="view_")),
    ):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0008_triage_model_version"),
        ("governance", "0003_seed_roles_and_chain"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
