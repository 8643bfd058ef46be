"""What agents receive, and what they send besides samples (remediation/api/batches.py)."""

from rest_framework import serializers


class SampleVerdictSerializer(serializers.Serializer):
    taken_at = serializers.DateTimeField()
    severity = serializers.CharField()
    confidence = serializers.FloatField()
    category = serializers.CharField(allow_null=True)
    decision = serializers.CharField()
    ticket_id = serializers.CharField(allow_null=True)
    explanation = serializers.ListField(child=serializers.ListField())
    duplicate = serializers.BooleanField(
        help_text="Already stored (resent): acknowledged, not stored or counted again."
    )


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
    lease_seconds = serializers.IntegerField(
        help_text="Start the action only within this many seconds of receiving it."
    )


class AgentResultSerializer(serializers.Serializer):
    token = serializers.IntegerField(min_value=1)
    ok = serializers.BooleanField()
    output = serializers.CharField(allow_blank=True, max_length=10_000, default="")


class AgentResultResponseSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    state = serializers.CharField()
