"""People cancel an unfinished execution over the API, through the same action as the admin."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import error_responses
from governance.audit.changes import REASON_FIELD
from remediation.actions import cancel_execution
from remediation.models import Execution


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="Why: recorded in the audit trail.")


class CancelResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()


class ExecutionCancelView(APIView):
    request_fields = {REASON_FIELD: "reason"}  # the action's reason is this request's "reason"

    @extend_schema(
        request=CancelSerializer,
        parameters=[OpenApiParameter("id", {"type": "integer", "minimum": 1}, "path")],
        responses={200: CancelResultSerializer, **error_responses(400, 401, 403, 404, 409)},
        summary="Cancel an unfinished execution, saying why",
    )
    def post(self, request: Request, pk: int) -> Response:
        serializer = CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        execution = get_object_or_404(Execution, pk=pk)
        execution = cancel_execution(
            execution,
            actor=request.user,
            reason=serializer.validated_data["reason"],
            now=timezone.now(),
        )
        return Response({"id": execution.pk, "state": execution.state})
