"""The outbox (notices, their deliveries, the links people used) is read by the people's
roles, like everything else: supervisors and compliance see who was told what and what went
out to nobody, and approvers read everything. A fresh install's roles hold these already
(migration 0003 grants every model's view permission); an install older than the notices
(0012) did not."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OUTBOX_READERS = ("supervisors", "approvers", "compliance")
OUTBOX_MODELS = ("notice", "noticedelivery", "noticelinkuse")


def grant_outbox(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions are normally made after migrate
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(
        content_type__app_label="governance",
        codename__in=[f"view_{model}" for model in OUTBOX_MODELS],
    )
    for name in OUTBOX_READERS:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*view)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0022_seed_numbers_in_seeded_policies"),
    ]

    operations = [migrations.RunPython(grant_outbox, migrations.RunPython.noop)]
