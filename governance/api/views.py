"""Approvers approve or reject over the API, through the same actions as the admin."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import error_responses
from governance.approvals.actions import approve_request, reject_request
from governance.audit.changes import REASON_FIELD
from governance.models import ApprovalRequest


class VerdictSerializer(serializers.Serializer):
    comment = serializers.CharField(allow_blank=True, max_length=2000, default="")


class VerdictResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="pending until enough approvers agree")


class ApprovalVerdictView(APIView):
    verdict = "approve"
    request_fields = {REASON_FIELD: "comment"}  # the action's reason is this request's comment

    @extend_schema(
        request=VerdictSerializer,
        parameters=[OpenApiParameter("id", {"type": "integer", "minimum": 1}, "path")],
        responses={200: VerdictResultSerializer, **error_responses(400, 401, 403, 404, 409)},
        summary="Approve or reject a remediation waiting for people",
    )
    def post(self, request: Request, pk: int) -> Response:
        approval_request = get_object_or_404(ApprovalRequest, pk=pk)
        serializer = VerdictSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        act = approve_request if self.verdict == "approve" else reject_request
        approval_request = act(
            approval_request,
            actor=request.user,
            reason=serializer.validated_data["comment"],
            now=timezone.now(),
        )
        return Response(
            {"id": approval_request.pk, "status": approval_request.status},
            status=status.HTTP_200_OK,
        )
