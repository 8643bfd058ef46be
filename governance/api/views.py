"""Approvers approve or reject over the API, through the same use-case functions as the admin."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import error_responses
from governance.approvals.actions import ApprovalError, approve_request, reject_request
from governance.models import ApprovalRequest


class VerdictSerializer(serializers.Serializer):
    comment = serializers.CharField(allow_blank=True, max_length=2000, default="")


class VerdictResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="pending until enough approvers agree")


class ApprovalVerdictView(APIView):
    verdict = "approve"

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
        try:
            approval_request = act(
                approval_request,
                user=request.user,
                comment=serializer.validated_data["comment"],
                now=timezone.now(),
            )
        except ApprovalError as exc:
            if exc.code == "note_required":
                raise exceptions.ValidationError({"comment": [exc.message]}) from exc
            error = (
                exceptions.PermissionDenied
                if exc.code in ("forbidden", "own_request", "not_listed")
                else _Conflict
            )
            raise error(exc.message, code=exc.code) from exc
        return Response(
            {"id": approval_request.pk, "status": approval_request.status},
            status=status.HTTP_200_OK,
        )


class _Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
