"""The floor of bench/: the design's cost-table row "DRF validate + bulk insert", as a
Django project of its own, served by the same command as Warden beside it.

The same settings, middleware, authentication (an agent's host key), serializer and
table as Warden's POST /api/v1/metrics, and nothing else: no model, tickets, decisions
or audit. Serve it with DJANGO_SETTINGS_MODULE=bench.floor_settings.
"""

from datetime import timedelta
from functools import cache

from django.conf import settings
from django.urls import path
from django.utils import timezone
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import healthz
from remediation.api.authentication import HostKeyAuthentication, IsAgent
from scoring.models import MetricSample, ModelVersion

# Warden's sample serializer as it was before remediation/api/batches.py replaced it:
# the plain DRF serializer the cost table's floor row measures.
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_SAMPLE_AGE = timedelta(days=30)


class StrictFloatField(serializers.FloatField):
    """A JSON number only: "95" or true is a type error, not a number."""

    def to_internal_value(self, data: object) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class FlagField(serializers.Field):
    default_error_messages = {"invalid": "Must be 0 or 1."}

    def to_internal_value(self, data: object) -> int:
        if data in (0, 1) and not isinstance(data, bool | float):
            return int(data)
        self.fail("invalid")

    def to_representation(self, value: object) -> int:
        return int(bool(value))


def percent() -> StrictFloatField:
    return StrictFloatField(min_value=0, max_value=100)


class MetricSampleSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=253)
    taken_at = serializers.DateTimeField()
    disk_usage = percent()
    memory_usage = percent()
    cpu_usage = percent()
    dns_latency_ms = StrictFloatField(min_value=0, max_value=600_000)
    firewall_change_requested = FlagField()

    def validate_taken_at(self, value):
        if value > timezone.now() + MAX_CLOCK_SKEW:
            raise serializers.ValidationError("taken_at is in the future.")
        if value < timezone.now() - MAX_SAMPLE_AGE:
            raise serializers.ValidationError(
                f"taken_at is more than {MAX_SAMPLE_AGE.days} days in the past."
            )
        return value


def validate_batch(payload: object) -> list[dict]:
    if isinstance(payload, list):
        if not payload or len(payload) > settings.WARDEN_MAX_BATCH:
            raise exceptions.ValidationError({"samples": ["Send 1 to WARDEN_MAX_BATCH samples."]})
        serializer = MetricSampleSerializer(data=payload, many=True)
        serializer.is_valid(raise_exception=True)
        return list(serializer.validated_data)
    serializer = MetricSampleSerializer(data=payload)
    serializer.is_valid(raise_exception=True)
    return [serializer.validated_data]


@cache
def model_version_id() -> int:
    return ModelVersion.objects.values_list("pk", flat=True).first()


class FloorView(APIView):
    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    def post(self, request: Request) -> Response:
        rows = validate_batch(request.data)
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
                    model_version_id=model_version_id(),
                )
                for row in rows
            ]
        )
        return Response({"stored": len(rows)}, status=201)


urlpatterns = [
    path("healthz", healthz),
    path("api/v1/metrics", FloorView.as_view()),
]
