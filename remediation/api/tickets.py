"""Read-only ticket API for people and integrators: a ticket with its decisions and executions."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from governance.models import Decision
from remediation.evidence import ticket_evidence
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

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT},
        summary="The ticket's whole story as one evidence document",
    )
    @action(detail=True, methods=["get"])
    def evidence(self, request: Request, **kwargs: object) -> Response:
        if not request.user.has_perm("governance.view_auditevent"):
            raise exceptions.PermissionDenied("Evidence needs the view audit event permission.")
        return Response(ticket_evidence(self.get_object()))
