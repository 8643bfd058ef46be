"""Give every policy a first version, so each decision can name the edit it used.

0004 seeded the default policies with get_or_create inside a migration, where
django-simple-history records nothing: they had no version until someone edited
them, and decisions made under them recorded none. This writes the missing first
record ("+", created) from each policy's current row.
"""

from django.db import migrations


def first_versions(apps, schema_editor):
    Policy = apps.get_model("governance", "Policy")
    HistoricalPolicy = apps.get_model("governance", "HistoricalPolicy")
    versioned = HistoricalPolicy.objects.values_list("id", flat=True)
    copied = [field.attname for field in Policy._meta.concrete_fields]
    for policy in Policy.objects.exclude(pk__in=versioned).order_by("pk"):
        HistoricalPolicy.objects.create(
            **{name: getattr(policy, name) for name in copied},
            history_date=policy.created_at,
            history_type="+",
            history_change_reason="first version (seeded)",
        )


class Migration(migrations.Migration):
    dependencies = [("governance", "0005_autonomy_level_refusal_message")]

    operations = [migrations.RunPython(first_versions, migrations.RunPython.noop)]
