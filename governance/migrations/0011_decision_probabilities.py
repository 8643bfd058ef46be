"""Each decision records the model's probability for every class, not only its own:
the class of least expected cost may be less probable than one it beat."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0010_audit_export_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="decision",
            name="probabilities",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
