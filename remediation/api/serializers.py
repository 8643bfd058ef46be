"""What agents send and receive.

Plain serializers, not ModelSerializer: a batch is validated without a query per sample.
"""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Agents' clocks drift; a sample from further ahead than this is refused.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# An agent buffers while it cannot reach Warden; older than this, a clock is wrong.
MAX_SAMPLE_AGE = timedelta(days=30)


class StrictFloatField(serializers.FloatField):
    """A JSON number only: "95" or true is a type error, not a number."""

    def to_internal_value(self, data: object) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "integer", "enum": [0, 1]})
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


class SampleVerdictSerializer(serializers.Serializer):
    taken_at = serializers.DateTimeField()
    severity = serializers.CharField()
    confidence = serializers.FloatField()
    category = serializers.CharField(allow_null=True)
    decision = serializers.CharField()
    ticket_id = serializers.CharField(allow_null=True)
    explanation = serializers.ListField(child=serializers.ListField())


class MetricsResponseSerializer(serializers.Serializer):
    host = serializers.CharField()
    results = SampleVerdictSerializer(many=True)


class AgentActionSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    token = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["run", "rollback"])
    action = serializers.CharField()
    runbook = serializers.CharField()
    ticket_id = serializers.CharField()
    lease_expires_at = serializers.DateTimeField()


class AgentResultSerializer(serializers.Serializer):
    token = serializers.IntegerField(min_value=1)
    ok = serializers.BooleanField()
    output = serializers.CharField(allow_blank=True, max_length=10_000, default="")


class AgentResultResponseSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    state = serializers.CharField()
