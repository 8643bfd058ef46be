"""Samples partitioned by day and their minute summaries by week on PostgreSQL (SQLite keeps
plain tables), the summaries' table, and the hourly retention schedule
(scoring/partitions.py, scoring/retention.py).

Converting keeps every stored sample and its id (decisions name them); samples older than
the keeping period are kept too, in their own partitions, for the worker's first run to
drop with an audit event, never silently here.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

from scoring.partitions import SAMPLES, TABLES, partition_table, unpartition_table
from scoring.retention import wanted_partitions


def partition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    now = timezone.now()
    for table in TABLES:
        wanted = wanted_partitions(table, now)
        partition_table(table, wanted[0].start, wanted[-1].start)


def unpartition(apps, schema_editor) -> None:
    # The minute summaries' table goes with this migration's step back: samples only.
    if schema_editor.connection.vendor == "postgresql":
        unpartition_table(SAMPLES)


def schedule(apps, schema_editor) -> None:
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="warden-retention",
        defaults={
            "func": "scoring.tasks.keep_readings",
            "schedule_type": "I",
            "minutes": 60,
            "repeats": -1,
        },
    )


def unschedule(apps, schema_editor) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name="warden-retention").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("remediation", "0021_ticket_category_read_from_its_text"),
        ("scoring", "0009_triage_model_roles"),
        # the decisions' foreign key to samples goes first: a partitioned table takes none
        ("governance", "0025_decision_sample_outlives_partitions"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="SampleMinute",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("minute", models.DateTimeField()),
                ("samples", models.PositiveIntegerField()),
                ("disk_min", models.FloatField()),
                ("disk_max", models.FloatField()),
                ("disk_sum", models.FloatField()),
                ("memory_min", models.FloatField()),
                ("memory_max", models.FloatField()),
                ("memory_sum", models.FloatField()),
                ("cpu_min", models.FloatField()),
                ("cpu_max", models.FloatField()),
                ("cpu_sum", models.FloatField()),
                ("dns_min", models.FloatField()),
                ("dns_max", models.FloatField()),
                ("dns_sum", models.FloatField()),
                (
                    "worst_severity",
                    models.PositiveSmallIntegerField(
                        choices=[(0, "NO_ACTION"), (1, "AUTO_HEAL"), (2, "HITL_REQUIRED")]
                    ),
                ),
                ("last_at", models.DateTimeField()),
                (
                    "last_severity",
                    models.PositiveSmallIntegerField(
                        choices=[(0, "NO_ACTION"), (1, "AUTO_HEAL"), (2, "HITL_REQUIRED")]
                    ),
                ),
                ("last_features", models.JSONField(default=list)),
            ],
            options={
                "ordering": ["-minute"],
            },
        ),
        migrations.RemoveIndex(
            model_name="metricsample",
            name="scoring_met_receive_7555a1_idx",
        ),
        migrations.AlterField(
            model_name="metricsample",
            name="host",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="samples",
                to="remediation.host",
            ),
        ),
        migrations.AddIndex(
            model_name="metricsample",
            index=models.Index(fields=["taken_at"], name="scoring_sample_taken_at"),
        ),
        migrations.AddField(
            model_name="sampleminute",
            name="host",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="remediation.host",
            ),
        ),
        migrations.AddIndex(
            model_name="sampleminute",
            index=models.Index(fields=["minute"], name="scoring_minute_minute"),
        ),
        migrations.AddConstraint(
            model_name="sampleminute",
            constraint=models.UniqueConstraint(
                fields=("host", "minute"), name="one_summary_per_host_minute"
            ),
        ),
        migrations.AddConstraint(
            model_name="sampleminute",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("worst_severity__in", [0, 1, 2]),
                    ("worst_severity__isnull", True),
                    _connector="OR",
                ),
                name="scoring_sampleminute_worst_severity_allowed",
            ),
        ),
        migrations.AddConstraint(
            model_name="sampleminute",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("last_severity__in", [0, 1, 2]),
                    ("last_severity__isnull", True),
                    _connector="OR",
                ),
                name="scoring_sampleminute_last_severity_allowed",
            ),
        ),
        migrations.RunPython(partition, unpartition),
        migrations.RunPython(schedule, unschedule),
    ]
