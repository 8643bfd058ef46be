# The constraints after the data step (0009): on PostgreSQL a table cannot be altered in the
# transaction that updated its rows.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0010_one_current_verdict_per_person_and_service_feedback"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="feedback",
            index=models.Index(
                condition=models.Q(("superseded_at__isnull", True)),
                fields=["created_at"],
                name="feedback_current_by_time",
            ),
        ),
        migrations.AddConstraint(
            model_name="feedback",
            constraint=models.UniqueConstraint(
                condition=models.Q(("superseded_at__isnull", True)),
                fields=("ticket", "submitted_by"),
                name="one_current_verdict_per_person_per_ticket",
            ),
        ),
        migrations.AddConstraint(
            model_name="feedback",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("superseded_by__isnull", True),
                    ("superseded_at__isnull", False),
                    _connector="OR",
                ),
                name="feedback_superseded_at_a_time",
            ),
        ),
    ]
