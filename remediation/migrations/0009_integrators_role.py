"""Seed the integrators role: other systems that open tickets, give feedback and read stats
over the API with a token (`manage.py create_api_token`). They approve nothing."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSIONS = {
    "remediation": ("add_ticket", "view_ticket", "view_execution", "view_host", "view_runbook"),
    "governance": ("view_decision", "view_approvalrequest", "view_auditevent", "view_policy"),
    "feedback": ("add_feedback", "view_feedback", "view_pattern"),
}


def seed(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    integrators, _ = Group.objects.get_or_create(name="integrators")
    for app_label, codenames in PERMISSIONS.items():
        integrators.permissions.add(
            *Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("remediation", "0008_ticket_priority_and_alert_source"),
        ("governance", "0003_seed_roles_and_chain"),
        ("feedback", "0005_feedback_actual_actions_taken"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
