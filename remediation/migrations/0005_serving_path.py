"""The serving path's bookkeeping: each host's newest sample, and on PostgreSQL a
sequence for ticket numbers (which no transaction waits for), continuing the counter."""

from django.db import migrations, models

TICKET_SEQUENCE = "remediation_ticket_number"


def remember_last_samples(apps, schema_editor):
    Host = apps.get_model("remediation", "Host")
    MetricSample = apps.get_model("scoring", "MetricSample")
    metrics = ("disk_usage", "memory_usage", "cpu_usage", "dns_latency_ms")
    for host in Host.objects.all().iterator():
        last = MetricSample.objects.filter(host=host).order_by("-taken_at").first()
        if last is not None:
            host.last_sample_at = last.taken_at
            host.last_metrics = [getattr(last, name) for name in metrics] + [
                int(last.firewall_change_requested)
            ]
            host.save(update_fields=["last_sample_at", "last_metrics"])


def create_ticket_sequence(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    Counter = apps.get_model("remediation", "Counter")
    counter = Counter.objects.filter(name="ticket").first()
    start = (counter.value if counter else 0) + 1
    schema_editor.execute(f"CREATE SEQUENCE IF NOT EXISTS {TICKET_SEQUENCE} START WITH {start}")


def drop_ticket_sequence(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP SEQUENCE IF EXISTS {TICKET_SEQUENCE}")


class Migration(migrations.Migration):
    dependencies = [
        ("remediation", "0004_alter_historicalhost_name_alter_host_name"),
        ("scoring", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="host",
            name="last_metrics",
            field=models.JSONField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="host",
            name="last_sample_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(remember_last_samples, migrations.RunPython.noop),
        migrations.RunPython(create_ticket_sequence, drop_ticket_sequence),
    ]
