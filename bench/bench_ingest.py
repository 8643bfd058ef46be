"""Metrics ingestion through the whole pipeline, beside the design's floor, in one process.

The floor is the cost-table row "POST N samples, DRF validate + bulk insert":
the same serializer and the same rows, with no model, tickets or audit.
Run: .venv/bin/python bench/bench_ingest.py  (a throwaway SQLite database in /tmp)
"""

import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["WARDEN_DATA_DIR"] = tempfile.mkdtemp(prefix="warden-bench-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from config.urls import urlpatterns  # noqa: E402
from remediation.api.authentication import HostKeyAuthentication, IsAgent  # noqa: E402
from remediation.api.views import validate_batch  # noqa: E402
from remediation.hosts import add_host  # noqa: E402
from scoring.models import MetricSample, ModelVersion  # noqa: E402


class FloorView(APIView):
    """Validate and bulk-insert, nothing else: the cost table's floor."""

    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    def post(self, request):
        rows = validate_batch(request.data)
        version = ModelVersion.objects.only("id").first()
        MetricSample.objects.bulk_create(
            [
                MetricSample(
                    host=request.auth,
                    taken_at=row["taken_at"],
                    disk_usage=row["disk_usage"],
                    memory_usage=row["memory_usage"],
                    cpu_usage=row["cpu_usage"],
                    dns_latency_ms=row["dns_latency_ms"],
                    firewall_change_requested=bool(row["firewall_change_requested"]),
                    severity=0,
                    confidence=1.0,
                    model_version=version,
                )
                for row in rows
            ]
        )
        return Response({"stored": len(rows)}, status=201)


urlpatterns = [*urlpatterns, path("floor", FloorView.as_view())]


def batch(host: str, n: int, start: int) -> str:
    now = timezone.now() - timedelta(days=1)
    return json.dumps(
        [
            {
                "host": host,
                "taken_at": (now + timedelta(seconds=start + i)).isoformat(),
                "disk_usage": 40 + (i % 7),
                "memory_usage": 50 + (i % 5),
                "cpu_usage": 20 + (i % 11),
                "dns_latency_ms": 15 + (i % 3),
                "firewall_change_requested": 0,
            }
            for i in range(n)
        ]
    )


def measure(client: Client, url: str, key: str, host: str, n: int, rounds: int) -> float:
    """Median samples per second over `rounds` POSTs of `n` samples."""
    rates = []
    for r in range(rounds):
        body = batch(host, n, r * n)
        started = time.perf_counter()
        response = client.post(
            url, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 201, response.content
        rates.append(n / elapsed)
    return statistics.median(rates)


def main() -> None:
    call_command("migrate", verbosity=0)
    call_command("train_severity_model", approve=True, stdout=open(os.devnull, "w"))  # noqa: SIM115
    _, key = add_host("bench-01")
    client = Client()
    print("POST /api/v1/metrics, healthy samples, SQLite, sync Django test client")
    print(f"{'batch':>6} {'warden samples/s':>18} {'floor samples/s':>16} {'ratio':>6}")
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
        for n, rounds in ((1, 300), (100, 40), (1000, 8)):
            measure(client, "/api/v1/metrics", key, "bench-01", n, 3)  # warm up
            warden = measure(client, "/api/v1/metrics", key, "bench-01", n, rounds)
            floor = measure(client, "/floor", key, "bench-01", n, rounds)
            print(f"{n:>6} {warden:>18,.0f} {floor:>16,.0f} {warden / floor:>6.2f}")


if __name__ == "__main__":
    main()
