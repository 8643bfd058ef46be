"""The partitions already made get the statistics target new ones are made with
(scoring.partitions.STATISTICS_TARGET): autovacuum's analyze of the partition being
written reads 3,000 rows, not 30,000 (PostgreSQL only; SQLite keeps plain tables)."""

from django.db import migrations

from scoring.partitions import STATISTICS_TARGET, TABLES, attached, sample_less


def retarget(target: int):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            for table in TABLES:
                for partition in attached(table):
                    sample_less(cursor, partition.name, target)

    return run


class Migration(migrations.Migration):
    dependencies = [("scoring", "0010_samples_partitioned_and_minutes")]

    operations = [migrations.RunPython(retarget(STATISTICS_TARGET), retarget(-1))]
