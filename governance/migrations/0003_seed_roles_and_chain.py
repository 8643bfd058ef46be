"""Seed the audit chain head and the three roles: supervisors, approvers, compliance."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

APPS = ("remediation", "governance", "scoring", "feedback")


def seed(apps, schema_editor):
    # Permissions are normally made after migrate; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None

    apps.get_model("governance", "AuditChainHead").objects.get_or_create(pk=1)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(content_type__app_label__in=APPS)
    view_only = ours.filter(codename__startswith="view_")
    approve = ours.filter(codename="approve_approvalrequest")

    supervisors, _ = Group.objects.get_or_create(name="supervisors")
    supervisors.permissions.set(ours)
    approvers, _ = Group.objects.get_or_create(name="approvers")
    approvers.permissions.set(view_only | approve)
    compliance, _ = Group.objects.get_or_create(name="compliance")
    compliance.permissions.set(view_only)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0002_initial"),
        ("remediation", "0001_initial"),
        ("scoring", "0001_initial"),
        ("feedback", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
