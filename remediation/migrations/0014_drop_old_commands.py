"""The old free-text commands go, once every row has its exact argv (0013_argv_truth).

A migration of its own: PostgreSQL cannot alter a table with the data migration's
deferred trigger events still pending in the same transaction.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("remediation", "0013_argv_truth"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="execution",
            name="commands",
        ),
        migrations.RemoveField(
            model_name="historicalrunbook",
            name="commands",
        ),
        migrations.RemoveField(
            model_name="runbook",
            name="commands",
        ),
    ]
