"""The ticket API for people and integrators (the seed's REST API).

GET  /api/v1/tickets                              tickets with their decisions and executions
POST /api/v1/tickets                              another system opens a ticket (remediation.intake)
GET  /api/v1/tickets/{id}                         one ticket, with the seed's fields
GET  /api/v1/tickets/{id}/remediation-logs        what ran on it and every audit event of it
POST /api/v1/tickets/{id}/approve-remediation     approve or reject what waits for people
GET  /api/v1/tickets/{id}/evidence                its whole story as one document

Each verb calls its use case; the caller is the token's (or session's) user, and what it
may do is what that user's roles allow.
"""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_errors import Conflict, error_responses
from feedback.api.serializers import ReliabilitySerializer, reliability_json
from governance.approvals.actions import (
    ApprovalError,
    approve_request,
    reject_request,
)
from governance.audit import permissions as warden_permissions
from governance.decisions.deciding import current_reliability
from governance.models import ApprovalRequest, ApprovalStatus, AuditEvent, Decision, Verdict
from governance.rules.labels import event_label
from remediation.choices import Category, ExecutionState, Priority
from remediation.evidence import ticket_evidence, ticket_rows
from remediation.intake import TICKET_ID, ExternalTicket, TicketConflict, open_external_ticket
from remediation.models import Execution, Ticket, TicketSource
from scoring.reliability import ReliabilityBreakdown

VIEW_TICKETS = "remediation.view_ticket"
VIEW_AUDIT = "governance.view_auditevent"
# What each verb of the ticket API needs from the caller's roles.
ACTION_PERMISSIONS = {
    "list": (VIEW_TICKETS,),
    "retrieve": (VIEW_TICKETS,),
    "evidence": (VIEW_TICKETS,),
    "remediation_logs": (VIEW_TICKETS, VIEW_AUDIT),
    "create": ("remediation.add_ticket",),
    "approve_remediation": (VIEW_TICKETS, warden_permissions.APPROVE),
}
ERRORS = error_responses(400, 401, 403, 404)
# Every stored ticket_id has this form (Warden's INC-000123 and callers' ids alike), so the
# schema says so: an id of another form is a ticket that cannot exist.
TICKET_ID_PARAMETER = OpenApiParameter(
    "ticket_id",
    str,
    OpenApiParameter.PATH,
    pattern=TICKET_ID.pattern,
    description="e.g. INC-000123",
)
# An execution that ran to an end: its outcome is the remediation's result.
SUCCEEDED = {ExecutionState.SUCCEEDED}
FAILED = {ExecutionState.FAILED, ExecutionState.ROLLED_BACK, ExecutionState.ROLLBACK_FAILED}


class TicketPermission(permissions.BasePermission):
    """A person (or service user) holding the permissions of the verb asked for."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and getattr(user, "is_active", False)):
            return False
        needed = ACTION_PERMISSIONS.get(view.action, (VIEW_TICKETS,))
        return all(user.has_perm(permission) for permission in needed)


# --- Reading ------------------------------------------------------------------------------


class DecisionSerializer(serializers.ModelSerializer):
    # null when the decision named none (an escalation has no runbook)
    policy = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

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
            "argv",
            "argv_digest",
            "created_at",
        ]


class ExecutionSerializer(serializers.ModelSerializer):
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "runbook",
            "state",
            "argv",
            "argv_digest",
            "exit_code",
            "created_at",
            "started_at",
            "finished_at",
            "output",
        ]


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


class SuggestedActionSerializer(serializers.Serializer):
    action = serializers.CharField(help_text="the runbook's title")
    runbook = serializers.CharField()
    system = serializers.CharField(help_text="the host it would run on")
    action_type = serializers.CharField()
    commands = serializers.ListField(child=serializers.CharField())
    argv = serializers.ListField(
        child=serializers.CharField(), help_text="exactly what would run, program first"
    )
    argv_digest = serializers.CharField(allow_blank=True)
    allowed = serializers.BooleanField(help_text="whether the rules let it run at all")


class RemediationDecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    outcome = serializers.CharField(help_text="NO_ACTION, AUTO_HEAL or HITL_REQUIRED")
    allowed = serializers.BooleanField()
    requires_approval = serializers.BooleanField()
    required_approvals = serializers.IntegerField()
    action_type = serializers.CharField()
    risk_level = serializers.CharField()
    shadow = serializers.BooleanField()
    policy = serializers.CharField(allow_null=True)
    reasoning = serializers.ListField(child=serializers.CharField())
    safety_checks = serializers.DictField(child=serializers.BooleanField())
    reliability = serializers.DictField(help_text="the reliability the decision was made on")
    decided_at = serializers.DateTimeField()


class ExecutedActionSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    runbook = serializers.CharField()
    action = serializers.CharField()
    state = serializers.CharField()
    automatic = serializers.BooleanField(help_text="queued by the decision, not by approvers")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    output = serializers.CharField(allow_blank=True)


class RemediationResultsSerializer(serializers.Serializer):
    success = serializers.BooleanField(
        allow_null=True, help_text="the latest execution's outcome; null while unfinished"
    )
    state = serializers.CharField(help_text="the latest execution's state")
    executed_actions = ExecutedActionSerializer(many=True)


class TicketDetailSerializer(TicketSerializer):
    """A ticket with the seed's fields: what Warden suggests, how sure it is, what it decided
    and what ran. `reliability_score` is as of now (feedback moves it at once); the
    decision's own is in `remediation_decision.reliability`."""

    auto_remediation_enabled = serializers.BooleanField(source="enable_auto_remediation")
    confidence_score = serializers.FloatField(source="confidence")
    reliability_score = serializers.SerializerMethodField()
    reliability_breakdown = serializers.SerializerMethodField()
    suggested_actions = serializers.SerializerMethodField()
    auto_remediation_executed = serializers.SerializerMethodField()
    remediation_decision = serializers.SerializerMethodField()
    remediation_results = serializers.SerializerMethodField()

    class Meta(TicketSerializer.Meta):
        fields = [
            *TicketSerializer.Meta.fields,
            "description",
            "source",
            "priority",
            "affects_billing",
            "data_integrity",
            "customer_impact_minutes",
            "security_severity",
            "parameters",
            "auto_remediation_enabled",
            "confidence_score",
            "reliability_score",
            "reliability_breakdown",
            "suggested_actions",
            "auto_remediation_executed",
            "remediation_decision",
            "remediation_results",
        ]

    def _reliability(self, ticket: Ticket) -> ReliabilityBreakdown | None:
        cache = self.context.setdefault("reliability", {})
        if ticket.pk not in cache:
            cache[ticket.pk] = current_reliability(ticket, timezone.now())
        return cache[ticket.pk]

    @staticmethod
    def _latest_decision(ticket: Ticket) -> Decision | None:
        return max(ticket.decisions.all(), key=lambda d: (d.created_at, d.pk), default=None)

    @staticmethod
    def _executions(ticket: Ticket) -> list[Execution]:
        return sorted(ticket.executions.all(), key=lambda e: (e.created_at, e.pk))

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_reliability_score(self, ticket: Ticket) -> float | None:
        score = self._reliability(ticket)
        return score.overall_score if score else None

    @extend_schema_field(ReliabilitySerializer(allow_null=True))
    def get_reliability_breakdown(self, ticket: Ticket) -> dict | None:
        return reliability_json(self._reliability(ticket))

    @extend_schema_field(SuggestedActionSerializer(many=True))
    def get_suggested_actions(self, ticket: Ticket) -> list[dict]:
        decision = self._latest_decision(ticket)
        if decision is None or decision.runbook is None:
            return []
        return [
            {
                "action": decision.runbook.title,
                "runbook": decision.runbook.name,
                "system": ticket.host.name,
                "action_type": decision.action_type,
                "commands": list(decision.commands),
                "argv": list(decision.argv),
                "argv_digest": decision.argv_digest,
                "allowed": decision.allowed,
            }
        ]

    @extend_schema_field(serializers.BooleanField())
    def get_auto_remediation_executed(self, ticket: Ticket) -> bool:
        return any(e.started_at is not None for e in ticket.executions.all())

    @extend_schema_field(RemediationDecisionSerializer(allow_null=True))
    def get_remediation_decision(self, ticket: Ticket) -> dict | None:
        decision = self._latest_decision(ticket)
        if decision is None:
            return None
        return {
            "id": decision.pk,
            "outcome": decision.outcome,
            "allowed": decision.allowed,
            "requires_approval": decision.requires_approval,
            "required_approvals": decision.required_approvals,
            "action_type": decision.action_type,
            "risk_level": decision.risk_level,
            "shadow": decision.shadow,
            "policy": decision.policy.name if decision.policy else None,
            "reasoning": list(decision.reasons),
            "safety_checks": dict(decision.safety_checks),
            "reliability": dict(decision.reliability),
            "decided_at": decision.created_at,
        }

    @extend_schema_field(RemediationResultsSerializer(allow_null=True))
    def get_remediation_results(self, ticket: Ticket) -> dict | None:
        executions = self._executions(ticket)
        if not executions:
            return None
        latest = executions[-1]
        success = True if latest.state in SUCCEEDED else False if latest.state in FAILED else None
        return {
            "success": success,
            "state": latest.state,
            "executed_actions": [
                {
                    "execution_id": e.pk,
                    "runbook": e.runbook.name,
                    "action": e.action or e.runbook.action,
                    "state": e.state,
                    "automatic": e.approval_request_id is None,
                    "started_at": e.started_at,
                    "finished_at": e.finished_at,
                    "output": e.output,
                }
                for e in executions
            ],
        }


# --- Opening ------------------------------------------------------------------------------


class OpenTicketSerializer(serializers.Serializer):
    """The seed's ticket body, with PHASE-65's escalation facts."""

    ticket_id = serializers.CharField(
        max_length=32, help_text="your system's id for it; the ticket is read back by it"
    )
    host = serializers.CharField(max_length=253, help_text="a registered host's name")
    category = serializers.ChoiceField(choices=Category.choices)
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    description = serializers.CharField(
        max_length=10_000, required=False, allow_blank=True, default=""
    )
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.MEDIUM)
    enable_auto_remediation = serializers.BooleanField(
        default=False,
        help_text="off unless set: without it a person approves anything that would run",
    )
    affects_billing = serializers.BooleanField(default=False)
    data_integrity = serializers.BooleanField(default=False)
    customer_impact_minutes = serializers.FloatField(min_value=0, max_value=525_600, default=0.0)
    security_severity = serializers.ChoiceField(
        choices=["none", "low", "medium", "high", "critical"], default="none"
    )
    parameters = serializers.DictField(
        child=serializers.CharField(max_length=200),
        required=False,
        default=dict,
        help_text='values the category\'s runbook command takes, e.g. {"address": '
        '"203.0.113.7"} for block-address; each is checked by its type when decided',
    )


# --- Approving ----------------------------------------------------------------------------


class ApproveRemediationSerializer(serializers.Serializer):
    approve = serializers.BooleanField(help_text="true approves, false rejects (a veto)")
    comment = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="a rejection's why"
    )
    ticket_id = serializers.CharField(
        required=False, help_text="optional; when sent it must be the path's ticket"
    )
    approver = serializers.CharField(
        required=False,
        help_text="optional and never trusted: the approver is always the authenticated user",
    )

    def validate(self, data: dict) -> dict:
        if not data["approve"] and not data["comment"].strip():
            raise serializers.ValidationError(
                {"comment": ["A rejection needs a comment saying why."]}
            )
        return data


class ApprovalResultSerializer(serializers.Serializer):
    ticket_id = serializers.CharField()
    approval_request = serializers.IntegerField()
    status = serializers.CharField(help_text="pending until enough approvers agree")
    approvals = serializers.IntegerField()
    required_approvals = serializers.IntegerField()
    approver = serializers.CharField()
    ticket_status = serializers.CharField()
    execution_id = serializers.IntegerField(
        allow_null=True, help_text="the execution the last approval queued"
    )


# --- Logs ---------------------------------------------------------------------------------


class ExecutionLogSerializer(serializers.ModelSerializer):
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SerializerMethodField()
    automatic = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = [
            "id",
            "runbook",
            "runbook_version",
            "action",
            "commands",
            "state",
            "automatic",
            "requested_by",
            "approval_request",
            "created_at",
            "started_at",
            "finished_at",
            "output",
            "verify_samples_seen",
            "rollback_action",
            "rollback_output",
            "cancel_reason",
        ]

    @extend_schema_field(serializers.CharField())
    def get_requested_by(self, execution: Execution) -> str:
        return execution.requested_by.get_username() if execution.requested_by else "system"

    @extend_schema_field(serializers.BooleanField())
    def get_automatic(self, execution: Execution) -> bool:
        return execution.approval_request_id is None


class AuditLogSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at")
    label = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["sequence", "at", "actor", "action", "label", "summary", "data", "hash"]

    @extend_schema_field(serializers.CharField())
    def get_label(self, audit_event: AuditEvent) -> str:
        return event_label(audit_event.action)


class RemediationLogsSerializer(serializers.Serializer):
    ticket_id = serializers.CharField()
    executions = ExecutionLogSerializer(many=True)
    events = AuditLogSerializer(many=True, help_text="every audit event of the ticket, in order")


# --- The view -----------------------------------------------------------------------------


class TicketViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TicketSerializer
    permission_classes = [TicketPermission]
    lookup_field = "ticket_id"
    filterset_fields = ["status", "category", "host__name"]
    queryset = Ticket.objects.select_related("host").prefetch_related(
        "decisions__policy", "decisions__runbook", "executions__runbook"
    )

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return TicketDetailSerializer if self.action == "retrieve" else TicketSerializer

    @extend_schema(
        responses={200: TicketSerializer(many=True), **error_responses(400, 401, 403)},
        summary="Tickets with their decisions and executions, filtered",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[TICKET_ID_PARAMETER],
        responses={200: TicketDetailSerializer, **ERRORS},
        summary="A ticket with what Warden suggests, decided and ran",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=OpenTicketSerializer,
        responses={201: TicketDetailSerializer, **error_responses(400, 401, 403, 409)},
        summary="Open a ticket from another system (decided at once by the same engine)",
        description=(
            "Automatic remediation stays off unless `enable_auto_remediation` is true. "
            "A ticket_id already stored, or a host with an open ticket in the category, "
            "is refused with 409 naming the field."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = OpenTicketSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report = ExternalTicket(**body.validated_data, source=TicketSource.INTEGRATOR)
        try:
            opened = open_external_ticket(report, user=request.user, now=timezone.now())
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from exc
        except TicketConflict as exc:
            raise Conflict(exc.message, code=exc.code, fields=exc.fields) from exc
        ticket = self.get_queryset().get(pk=opened.ticket.pk)
        data = TicketDetailSerializer(ticket, context=self.get_serializer_context()).data
        location = f"{request.path.rstrip('/')}/{ticket.ticket_id}"
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(
        parameters=[TICKET_ID_PARAMETER],
        responses={200: RemediationLogsSerializer, **ERRORS},
        summary="What ran on the ticket and every audit event of it",
    )
    @action(detail=True, methods=["get"], url_path="remediation-logs")
    def remediation_logs(self, request: Request, **kwargs: Any) -> Response:
        ticket = self.get_object()
        rows = ticket_rows(ticket)
        return Response(
            {
                "ticket_id": ticket.ticket_id,
                "executions": ExecutionLogSerializer(rows.executions, many=True).data,
                "events": AuditLogSerializer(rows.events, many=True).data,
            }
        )

    @extend_schema(
        request=ApproveRemediationSerializer,
        parameters=[TICKET_ID_PARAMETER],
        responses={200: ApprovalResultSerializer, **error_responses(400, 401, 403, 404, 409)},
        summary="Approve or reject the remediation waiting on the ticket, as yourself",
        description=(
            "The approver is the authenticated user. Nobody approves their own request; "
            "critical actions need two approvers; one rejection is a veto and needs a comment."
        ),
    )
    @action(detail=True, methods=["post"], url_path="approve-remediation")
    def approve_remediation(self, request: Request, **kwargs: Any) -> Response:
        ticket = self.get_object()
        body = ApproveRemediationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        user = request.user
        if data.get("ticket_id") not in (None, ticket.ticket_id):
            raise exceptions.ValidationError(
                {"ticket_id": [f"This is ticket {ticket.ticket_id}'s approval."]}
            )
        if data.get("approver") not in (None, user.get_username(), user.email or None):
            raise exceptions.ValidationError(
                {
                    "approver": [
                        f"You are {user.get_username()}: the approver is always the "
                        "authenticated user."
                    ]
                }
            )
        pending = ApprovalRequest.objects.filter(
            ticket=ticket, status=ApprovalStatus.PENDING
        ).first()
        if pending is None:
            raise Conflict(
                f"Nothing on {ticket.ticket_id} waits for approval ({ticket.status}).",
                code="no_pending_approval",
            )
        verb = approve_request if data["approve"] else reject_request
        try:
            decided = verb(pending, user=user, comment=data["comment"], now=timezone.now())
        except ApprovalError as exc:
            if exc.code == "note_required":
                raise exceptions.ValidationError({"comment": [exc.message]}) from exc
            if exc.code in ("forbidden", "own_request", "not_listed"):
                raise exceptions.PermissionDenied(exc.message, code=exc.code) from exc
            raise Conflict(exc.message, code=exc.code) from exc
        ticket.refresh_from_db(fields=["status"])
        execution = Execution.objects.filter(approval_request=decided).values_list("pk", flat=True)
        return Response(
            {
                "ticket_id": ticket.ticket_id,
                "approval_request": decided.pk,
                "status": decided.status,
                "approvals": decided.approvals.filter(verdict=Verdict.APPROVE).count(),
                "required_approvals": decided.required_approvals,
                "approver": user.get_username(),
                "ticket_status": ticket.status,
                "execution_id": execution.first(),
            }
        )

    @extend_schema(
        parameters=[TICKET_ID_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, **error_responses(401, 403, 404)},
        summary="The ticket's whole story as one evidence document",
    )
    @action(detail=True, methods=["get"])
    def evidence(self, request: Request, **kwargs: Any) -> Response:
        if not request.user.has_perm(VIEW_AUDIT):
            raise exceptions.PermissionDenied("Evidence needs the view audit event permission.")
        return Response(ticket_evidence(self.get_object()))
