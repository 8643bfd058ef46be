"""What agents receive, and what they send besides samples (remediation/api/batches.py)."""

from rest_framework import serializers


class ProblemSerializer(serializers.Serializer):
    category = serializers.CharField()
    decision = serializers.CharField()
    ticket_id = serializers.CharField()


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
    problems = ProblemSerializer(
        many=True,
        help_text="Every problem the sample shows, each with its own ticket and decision "
        "(the strongest first; `decision` and `ticket_id` above are its).",
    )


class MetricsResponseSerializer(serializers.Serializer):
    host = serializers.CharField()
    results = SampleVerdictSerializer(many=True)


class AgentActionSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    token = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["run", "rollback"])
    action = serializers.CharField(help_text="The allow-list entry it runs under.")
    argv = serializers.ListField(
        child=serializers.CharField(),
        help_text="Exactly what to run, program first, no shell: run it only if the "
        "allow-list's entry for `action` allows it, and report it as run.",
    )
    argv_digest = serializers.CharField(help_text="SHA-256 of argv as compact JSON.")
    runbook = serializers.CharField()
    ticket_id = serializers.CharField()
    lease_expires_at = serializers.DateTimeField()
    lease_seconds = serializers.IntegerField(
        help_text="Start the action only within this many seconds of receiving it."
    )
    start_within_seconds = serializers.IntegerField(
        help_text="Say it started (POST /api/v1/agent/actions/{execution_id}/started with the "
        "token) within this many seconds, and run it only once that answers 200: a claim "
        "not said started is offered again, with the same token."
    )


class AgentResultSerializer(serializers.Serializer):
    token = serializers.IntegerField(min_value=1)
    ok = serializers.BooleanField()
    output = serializers.CharField(allow_blank=True, max_length=10_000, default="")
    argv = serializers.ListField(
        child=serializers.CharField(max_length=4096),
        max_length=256,
        allow_empty=True,
        help_text="The argv the agent ran; empty if it ran nothing (it refused). A report "
        "naming another argv than the one sent is refused (409 argv_mismatch).",
    )
    argv_digest = serializers.RegexField(
        r"^([0-9a-f]{64})?$", allow_blank=True, default="", help_text="SHA-256 of argv."
    )
    exit_code = serializers.IntegerField(
        min_value=-32768, max_value=32767, allow_null=True, default=None
    )
    not_started = serializers.BooleanField(
        default=False,
        help_text="The agent did not start it (it could not say it started in time, or "
        "stopped first): nothing ran. A claim is offered again; one Warden believed started "
        "is cancelled as never run.",
    )


class AgentStartSerializer(serializers.Serializer):
    token = serializers.IntegerField(min_value=1, help_text="The token the action came with.")


class AgentStartResponseSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    state = serializers.CharField(help_text="running, or rolling_back: start it now.")
    lease_expires_at = serializers.DateTimeField()
    lease_seconds = serializers.IntegerField(
        help_text="Report within this many seconds; past it the host's readings decide."
    )


class AllowlistSerializer(serializers.Serializer):
    entries = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=4096), max_length=256),
        help_text="Each action the agent allows and its command template.",
    )
    digest = serializers.CharField(max_length=64, help_text="SHA-256 of the entries.")
    agent_version = serializers.CharField(max_length=50, allow_blank=True, default="")


class AllowlistResponseSerializer(serializers.Serializer):
    host = serializers.CharField()
    entries = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    digest = serializers.CharField(allow_blank=True)
    reported_at = serializers.DateTimeField(allow_null=True)


class AgentResultResponseSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    state = serializers.CharField()
