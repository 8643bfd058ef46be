"""A sample is stored once per host and instant: resent duplicates already stored are
folded into the first copy (decisions that named a later copy name the first), then the
database refuses any more."""

from django.db import migrations, models
from django.db.models import Min


def fold_duplicate_samples(apps, schema_editor):
    MetricSample = apps.get_model("scoring", "MetricSample")
    Decision = apps.get_model("governance", "Decision")
    duplicated = (
        MetricSample.objects.values("host_id", "taken_at")
        .annotate(first=Min("id"), copies=models.Count("id"))
        .filter(copies__gt=1)
    )
    for group in duplicated.iterator():
        later = MetricSample.objects.filter(
            host_id=group["host_id"], taken_at=group["taken_at"]
        ).exclude(pk=group["first"])
        Decision.objects.filter(sample__in=later).update(sample_id=group["first"])
        later.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("remediation", "0005_serving_path"),
        ("scoring", "0001_initial"),
        ("governance", "0006_first_version_of_each_policy"),
    ]

    operations = [
        migrations.RunPython(fold_duplicate_samples, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name="metricsample",
            name="scoring_met_host_id_5895af_idx",
        ),
        migrations.AddConstraint(
            model_name="metricsample",
            constraint=models.UniqueConstraint(
                fields=("host", "taken_at"), name="one_sample_per_host_instant"
            ),
        ),
    ]
