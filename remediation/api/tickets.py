"""The ticket API for people and integrators (the seed's REST API).

GET  /api/v1/tickets                              tickets with their decisions and executions
POST /api/v1/tickets                              another system opens a ticket: 202 processing,
                                                  then triaged and decided in a task
POST /api/v1/tickets/{id}/host                    a person names a waiting ticket's host
GET  /api/v1/tickets/{id}                         one ticket, with the seed's fields
GET  /api/v1/tickets/{id}/remediation-logs        what ran on it and every audit event of it
POST /api/v1/tickets/{id}/approve-remediation     approve or reject what waits for people
GET  /api/v1/tickets/{id}/evidence                its whole story as one document

Each verb calls its use case; the caller is the token's (or session's) user, and what it
may do is what that user's roles allow.
"""

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_errors import error_responses
from governance.approvals.actions import approve_request, reject_request
from governance.approvals.requests import approvals_counted
from governance.audit import permissions as warden_permissions
from governance.audit.changes import REASON_FIELD
from governance.audit.errors import Conflict
from governance.exports.scope import may_read_ticket_trail
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.api.ticket_serializers import (
    ApprovalResultSerializer,
    ApproveRemediationSerializer,
    AuditLogSerializer,
    ExecutionLogSerializer,
    NameHostSerializer,
    OpenedTicketSerializer,
    OpenTicketSerializer,
    RemediationLogsSerializer,
    TicketDetailSerializer,
    TicketSerializer,
)
from remediation.evidence import ticket_evidence, ticket_rows
from remediation.intake import TICKET_ID, ExternalTicket, open_external_ticket
from remediation.models import Execution, Ticket, TicketSource
from remediation.triage import name_host

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
    "host": (VIEW_TICKETS, warden_permissions.CLOSE_TICKET),
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


class TicketPermission(permissions.BasePermission):
    """A person (or service user) holding the permissions of the verb asked for."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and getattr(user, "is_active", False)):
            return False
        needed = ACTION_PERMISSIONS.get(view.action, (VIEW_TICKETS,))
        return all(user.has_perm(permission) for permission in needed)


def refuse_unless_may_read_trail(user: Any, ticket: Ticket) -> None:
    """A ticket's audit events are read like the trail (governance.exports.scope)."""
    if not may_read_ticket_trail(user, ticket.ticket_id):
        raise exceptions.PermissionDenied(
            "A ticket's audit events are for those who may read the whole audit trail, "
            "or who opened the ticket."
        )


def names_user(approver: str, user: Any) -> bool:
    """Does the seed's `approver` name `user`: their username, or their email in any case?"""
    given = approver.strip()
    email = (user.email or "").strip()
    return given == user.get_username() or (bool(email) and given.lower() == email.lower())


class TicketViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TicketSerializer
    permission_classes = [TicketPermission]
    lookup_field = "ticket_id"
    request_fields = {REASON_FIELD: "comment"}  # an approver's reason is this API's comment
    filterset_fields = ["status", "category", "host__name"]
    queryset = Ticket.objects.select_related("host", "opened_by").prefetch_related(
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
        responses={202: OpenedTicketSerializer, **error_responses(400, 401, 403, 409)},
        summary="Open a ticket from another system: stored, then triaged and decided in a task",
        description=(
            "Answers 202 with the seed's fields (`status` processing) and a Location to "
            "read it back; a django-q2 task triages its text, infers the host when `host` "
            "is not sent and the text names exactly one registered host, and decides it "
            "with the same engine. Without a host it waits, escalated, for a person to "
            "name one (POST .../host). Automatic remediation stays off unless "
            "`enable_auto_remediation` is true. A ticket_id already stored, or a host with "
            "an open ticket in the category, is refused with 409 naming the field."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = OpenTicketSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report = ExternalTicket(**body.validated_data, source=TicketSource.INTEGRATOR)
        opened = open_external_ticket(
            report, user=request.user, now=timezone.now(), triage_first=True
        )
        ticket = opened.ticket
        location = f"{request.path.rstrip('/')}/{ticket.ticket_id}"
        # The seed's five fields first, in its order, as stored (the task may already
        # have moved on: the answer says what was accepted).
        data = {
            "ticket_id": ticket.ticket_id,
            "status": ticket.status,
            "auto_remediation_enabled": ticket.enable_auto_remediation,
            "confidence_score": 0.0,
            "reliability_score": None,
            "host": ticket.host.name if ticket.host_id else None,
            "opened_by": ticket.opened_by.get_username() if ticket.opened_by else None,
            "links": {"self": request.build_absolute_uri(location)},
        }
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})

    @extend_schema(
        request=NameHostSerializer,
        parameters=[TICKET_ID_PARAMETER],
        responses={200: TicketDetailSerializer, **error_responses(400, 401, 403, 404, 409)},
        summary="Name the host (and category) of a ticket waiting for them; decided then",
    )
    @action(detail=True, methods=["post"])
    def host(self, request: Request, **kwargs: Any) -> Response:
        ticket = self.get_object()
        body = NameHostSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        name_host(
            ticket,
            body.validated_data["host"],
            actor=request.user,
            reason=body.validated_data["reason"],
            now=timezone.now(),
            category=body.validated_data["category"],
        )
        ticket = self.get_queryset().get(pk=ticket.pk)
        return Response(TicketDetailSerializer(ticket, context=self.get_serializer_context()).data)

    @extend_schema(
        parameters=[TICKET_ID_PARAMETER],
        responses={200: RemediationLogsSerializer, **ERRORS},
        summary="What ran on the ticket and every audit event of it",
    )
    @action(detail=True, methods=["get"], url_path="remediation-logs")
    def remediation_logs(self, request: Request, **kwargs: Any) -> Response:
        ticket = self.get_object()
        refuse_unless_may_read_trail(request.user, ticket)
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
            "The approver is the authenticated user. Nobody approves a ticket they opened, a "
            "runbook version they saved, or as a service's user; critical actions need two "
            "different people; one rejection is a veto and needs a comment."
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
        if "approver" in data and not names_user(data["approver"], user):
            email = f" ({user.email})" if user.email else ""
            raise exceptions.ValidationError(
                {
                    "approver": [
                        f"This token belongs to {user.get_username()}{email}; a token "
                        f"approves only as its own user, not as {data['approver']}."
                    ]
                }
            )
        pending = ApprovalRequest.objects.filter(
            ticket=ticket, status=ApprovalStatus.PENDING
        ).first()
        if pending is None:
            raise Conflict(
                "no_pending_approval",
                f"Nothing on {ticket.ticket_id} waits for approval ({ticket.status}).",
            )
        verb = approve_request if data["approve"] else reject_request
        decided = verb(pending, actor=user, reason=data["comment"], now=timezone.now())
        ticket.refresh_from_db(fields=["status"])
        execution = Execution.objects.filter(approval_request=decided).values_list("pk", flat=True)
        return Response(
            {
                "ticket_id": ticket.ticket_id,
                "approval_request": decided.pk,
                "status": decided.status,
                "approvals": approvals_counted(decided),
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
        ticket = self.get_object()
        refuse_unless_may_read_trail(request.user, ticket)
        return Response(ticket_evidence(ticket))
