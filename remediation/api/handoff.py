"""The automation systems' callback: POST /api/v1/executions/{id}/callback.

No user and no token: the request is authenticated by its signature, made with the
shared secret of the execution's automation target (remediation.handoff), and the report
is honoured only with the execution's current fencing token.
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import error_responses
from remediation.api.views import EXECUTION_ID
from remediation.handoff import SIGNATURE_HEADER, accept_callback


class CallbackSerializer(serializers.Serializer):
    token = serializers.IntegerField(min_value=1, help_text="The token the request carried.")
    ok = serializers.BooleanField(help_text="Whether the action (or rollback) succeeded.")
    output = serializers.CharField(allow_blank=True, max_length=10_000, default="")


class CallbackResultSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    state = serializers.CharField()


class ExecutionCallbackView(APIView):
    authentication_classes: list = []  # the signature is the authentication
    permission_classes = [permissions.AllowAny]

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if response.status_code == status.HTTP_401_UNAUTHORIZED:
            response["WWW-Authenticate"] = f'{SIGNATURE_HEADER} realm="warden"'
        return response

    @extend_schema(
        request=CallbackSerializer,
        parameters=[
            EXECUTION_ID,
            OpenApiParameter(
                SIGNATURE_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=True,
                description='"t=<unix time>,v2=<hex HMAC-SHA256 of "<t>.POST.<path>." + body>" '
                "with the automation target's shared secret; <path> is this URL's path "
                "(/api/v1/executions/{id}/callback), so the signature names the execution. "
                "v1 signatures are refused.",
            ),
        ],
        responses={200: CallbackResultSerializer, **error_responses(400, 401, 404, 409)},
        auth=[],
        summary="An automation system reports how a handed-off action went",
        description=(
            "401: the signature is missing, wrong, made for another execution's URL, "
            "v1, or older than "
            "WARDEN_HANDOFF_SIGNATURE_MAX_AGE_SECONDS. 409: the token is stale or the "
            "execution is no longer running (a late report is kept on the record)."
        ),
    )
    def post(self, request: Request, execution_id: int) -> Response:
        body = request.body  # the signed bytes, before the parser reads them
        report = CallbackSerializer(data=request.data)
        report.is_valid(raise_exception=True)
        execution = accept_callback(
            execution_id,
            request.headers.get(SIGNATURE_HEADER, ""),
            body,
            report.validated_data,
            timezone.now(),
        )
        return Response({"execution_id": execution.pk, "state": execution.state})
