"""Read-only ticket API for people and integrators: a ticket with its decisions and executions."""

from rest_framework import permissions, serializers, viewsets

from governance.models import Decision
from remediation.models import Execution, Ticket


class DecisionSerializer(serializers.ModelSerializer):
    policy = serializers.SlugRelatedField(slug_field="name", read_only=True)
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Decision
        fields = [
            "id",
            "outcome",
            "model_outcome",
            "confidence",
            "allowed",
            "requires_approval",
            "required_approvals",
            "action_type",
            "risk_level",
            "shadow",
            "reasons",
            "safety_checks",
            "reliability",
            "explanation",
            "policy",
            "policy_version",
            "runbook",
            "created_at",
        ]


class ExecutionSerializer(serializers.ModelSerializer):
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Execution
        fields = ["id", "runbook", "state", "created_at", "started_at", "finished_at", "output"]


class TicketSerializer(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)
    executions = ExecutionSerializer(many=True, read_only=True)

    class Meta:
        model = Ticket
        fields = [
            "ticket_id",
            "title",
            "host",
            "category",
            "status",
            "severity",
            "confidence",
            "occurrence_count",
            "opened_at",
            "last_seen_at",
            "resolved_at",
            "resolution",
            "decisions",
            "executions",
        ]


class TicketViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TicketSerializer
    permission_classes = [permissions.IsAdminUser]
    lookup_field = "ticket_id"
    filterset_fields = ["status", "category", "host__name"]
    queryset = Ticket.objects.select_related("host").prefetch_related(
        "decisions__policy", "decisions__runbook", "executions__runbook"
    )
