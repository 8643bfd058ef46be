"""GET /api/v1/audit-events: the audit trail, filtered, paginated; with `format` (csv, json,
ndjson) the whole filtered trail streamed as a download for those who may export it.

Reading is scoped like writing (governance.exports.scope): a role that may not read the
whole trail (integrators) sees its own doings and the events of the tickets it opened."""

from pathlib import Path

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import exceptions, permissions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import ErrorSerializer, error_responses
from governance.audit import permissions as warden_permissions
from governance.audit import signing, verifier
from governance.audit.log import RECORD_FIELDS, user_actor
from governance.exports.filters import FILTER_FIELDS, audit_filter, export_format
from governance.exports.records import FORMATS, prepare
from governance.exports.scope import readable_events, reads_whole_trail
from governance.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = RECORD_FIELDS


class AuditEventPageSerializer(serializers.Serializer):
    """A page of the trail (BySequence); `next` is the rest."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = AuditEventSerializer(many=True)


class AuditExportSerializer(serializers.Serializer):
    """format=json: the filtered trail, then Warden's signed proof (docs/compliance.md)."""

    records = AuditEventSerializer(many=True)
    warden_audit_proof = serializers.DictField(
        help_text="the signed checkpoint and the signed statement of what was exported"
    )


class BySequence(CursorPagination):
    """Cursor pages: constant cost on a million events, and stable while events arrive."""

    ordering = "sequence"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class MayReadAuditTrail(permissions.BasePermission):
    message = "Reading the audit trail needs the view audit event permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.has_perm(warden_permissions.VIEW_AUDIT))


FILTER_PARAMETERS = [
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="from this time"),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="before this time"),
    OpenApiParameter("ticket", str, description="one ticket, e.g. INC-000123"),
    OpenApiParameter("host", str, description="events about a host and its tickets"),
    OpenApiParameter("actor", str, description="user:alice, system, agent:web-01"),
    OpenApiParameter("action", str, description="an event type or its family (approval)"),
    OpenApiParameter("after", int, description="records after this sequence"),
    OpenApiParameter(
        "format",
        str,
        enum=list(FORMATS),
        description="download the whole filtered trail in this format (export permission)",
    ),
]


class AuditEventList(APIView):
    permission_classes = [permissions.IsAuthenticated, MayReadAuditTrail]
    pagination_class = BySequence

    @extend_schema(
        operation_id="v1_audit_events_list",
        parameters=[
            *FILTER_PARAMETERS,
            # drf-spectacular adds a paginator's own only to a plain list response.
            OpenApiParameter("cursor", str, description="The pagination cursor value."),
            OpenApiParameter(
                "limit", int, description="Number of results to return per page (at most 1000)."
            ),
        ],
        responses={
            # Without `format` a page; with format=json the whole trail and its proof.
            (200, "application/json"): PolymorphicProxySerializer(
                component_name="AuditEventsPageOrExport",
                serializers=[AuditEventPageSerializer, AuditExportSerializer],
                resource_type_field_name=None,
                many=False,
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="format=csv: a header row, one row per event, the signed proof",
            ),
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR,
                description="format=ndjson: one JSON event per line, the signed proof last",
            ),
            **error_responses(400, 401, 403),
            404: OpenApiResponse(ErrorSerializer, description="not_found: an unknown `cursor`"),
        },
        summary="The audit trail, filtered; a download with `format`",
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        params = {name: request.query_params.get(name, "") for name in FILTER_FIELDS}
        chosen = audit_filter(params)
        fmt = (
            export_format(request.query_params.get("format"), default="")
            if ("format" in request.query_params)
            else None
        )
        events = readable_events(request.user, chosen.apply(AuditEvent.objects.all()))
        if fmt is not None:
            if not request.user.has_perm(warden_permissions.EXPORT_AUDIT):
                raise exceptions.PermissionDenied("Exporting needs the export audit permission.")
            described = chosen.described()
            if not reads_whole_trail(request.user):  # the statement says what narrowed it
                described["scope"] = f"readable by {user_actor(request.user)}"
            export = prepare(events, fmt, described)
            response = StreamingHttpResponse(export.chunks(), content_type=FORMATS[fmt])
            response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
            return response
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


class AuditPublicKeySerializer(serializers.Serializer):
    algorithm = serializers.CharField()
    key_id = serializers.CharField()
    public_key_pem = serializers.CharField()
    keys = serializers.ListField(
        child=serializers.DictField(),
        help_text="every key that signed a checkpoint: key_id, public_key_pem, first and "
        "last checkpoint it signed",
    )


class PublishedView(APIView):
    """Open to anyone: a public key gives no power, an auditor outside Warden needs it without
    an account, and the more places hold a copy the harder it is to swap it unseen."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []


class AuditPublicKey(PublishedView):
    @extend_schema(
        operation_id="v1_audit_public_key",
        responses={200: AuditPublicKeySerializer},
        summary="Warden's public key for the audit's signed checkpoints (no sign-in)",
        description="Verify an export or a ticket's evidence with it: "
        "`python verifier.py FILE --public-key warden-audit.pem` "
        "(GET /api/v1/audit/verifier.py). The PEM alone: GET /api/v1/audit/public-key.pem.",
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "algorithm": "Ed25519",
                "key_id": signing.current_key_id(),
                "public_key_pem": signing.public_key_pem(),
                "keys": signing.published_keys(),
            }
        )


class AuditPublicKeyPem(PublishedView):
    @extend_schema(
        operation_id="v1_audit_public_key_pem",
        responses={(200, "application/x-pem-file"): OpenApiTypes.STR},
        summary="Warden's audit public key as a PEM file (no sign-in)",
    )
    def get(self, request: Request) -> HttpResponse:
        response = HttpResponse(signing.public_key_pem(), content_type="application/x-pem-file")
        response["Content-Disposition"] = 'attachment; filename="warden-audit.pem"'
        return response


class AuditVerifierScript(PublishedView):
    @extend_schema(
        operation_id="v1_audit_verifier",
        responses={(200, "text/x-python"): OpenApiTypes.STR},
        summary="The offline audit verifier: one Python file, needing only `cryptography`",
    )
    def get(self, request: Request) -> HttpResponse:
        response = HttpResponse(
            Path(verifier.__file__).read_bytes(), content_type="text/x-python; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="verifier.py"'
        return response
