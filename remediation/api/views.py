"""The agent API: post metrics, pull actions, report results. Views stay thin."""

import time

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from remediation.api.authentication import HostKeyAuthentication, IsAgent
from remediation.api.serializers import (
    AgentActionSerializer,
    AgentResultResponseSerializer,
    AgentResultSerializer,
    MetricSampleSerializer,
    MetricsResponseSerializer,
)
from remediation.choices import EXECUTION_AGENT_CLAIMABLE
from remediation.executions import ExecutionError, claim_agent_actions, report_agent_result
from remediation.models import Execution, Host
from remediation.pipeline import ingest_samples
from scoring.features import Reading
from scoring.registry import ModelIntegrityError, NoApprovedModel

POLL_INTERVAL_SECONDS = 0.5


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "model_unavailable"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def validate_batch(payload: object) -> list[dict]:
    """One sample or a non-empty list of at most WARDEN_MAX_BATCH; raises naming the field."""
    if isinstance(payload, list):
        if not payload:
            raise exceptions.ValidationError({"samples": ["The batch is empty."]})
        if len(payload) > settings.WARDEN_MAX_BATCH:
            raise exceptions.ValidationError(
                {
                    "samples": [
                        f"At most {settings.WARDEN_MAX_BATCH} samples per request, "
                        f"got {len(payload)}."
                    ]
                }
            )
        serializer = MetricSampleSerializer(data=payload, many=True)
        serializer.is_valid(raise_exception=True)
        return list(serializer.validated_data)
    if not isinstance(payload, dict):
        raise exceptions.ValidationError({"samples": ["Send a sample object or a list of them."]})
    serializer = MetricSampleSerializer(data=payload)
    serializer.is_valid(raise_exception=True)
    return [serializer.validated_data]


class MetricsView(APIView):
    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        request=MetricSampleSerializer(many=True),
        responses={201: MetricsResponseSerializer},
        summary="Post one metric sample or a batch of them",
    )
    def post(self, request: Request) -> Response:
        host: Host = request.auth
        rows = validate_batch(request.data)
        names = {row["host"] for row in rows}
        # The usual case, an agent posting its own samples, needs no query here.
        known = (
            names
            if names == {host.name}
            else set(Host.objects.filter(name__in=names).values_list("name", flat=True))
        )
        unknown = {
            f"[{i}].host" if isinstance(request.data, list) else "host": [
                f"Unknown host {row['host']!r}."
            ]
            for i, row in enumerate(rows)
            if row["host"] not in known
        }
        if unknown:
            raise exceptions.ValidationError(unknown)
        if names != {host.name}:
            others = ", ".join(sorted(names - {host.name}))
            raise exceptions.PermissionDenied(
                f"This key belongs to {host.name}; it cannot post samples for {others}."
            )
        readings = [
            Reading(
                host=row["host"],
                taken_at=row["taken_at"],
                disk_usage=row["disk_usage"],
                memory_usage=row["memory_usage"],
                cpu_usage=row["cpu_usage"],
                dns_latency_ms=row["dns_latency_ms"],
                firewall_change_requested=row["firewall_change_requested"],
            )
            for row in rows
        ]
        try:
            verdicts = ingest_samples(host, readings, timezone.now())
        except (NoApprovedModel, ModelIntegrityError) as exc:
            raise ServiceUnavailable(str(exc)) from exc
        body = MetricsResponseSerializer({"host": host.name, "results": verdicts}).data
        return Response(body, status=status.HTTP_201_CREATED)


class AgentActionsView(APIView):
    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        parameters=[OpenApiParameter("wait", float, description="Seconds to wait for work.")],
        responses={
            200: inline_serializer("AgentActions", {"actions": AgentActionSerializer(many=True)})
        },
        summary="Take this host's pending actions (long poll)",
    )
    def get(self, request: Request) -> Response:
        host: Host = request.auth
        try:
            wait = float(request.query_params.get("wait", 0))
        except ValueError as exc:
            raise exceptions.ValidationError(
                {"wait": ["A number of seconds is required."]}
            ) from exc
        if not 0 <= wait <= settings.WARDEN_AGENT_POLL_MAX_SECONDS:
            raise exceptions.ValidationError(
                {"wait": [f"Must be 0 to {settings.WARDEN_AGENT_POLL_MAX_SECONDS} seconds."]}
            )
        deadline = time.monotonic() + wait
        pending = Execution.objects.filter(host=host, state__in=list(EXECUTION_AGENT_CLAIMABLE))
        while True:
            # A plain read first: claiming takes a write lock, waiting must not.
            actions = claim_agent_actions(host, timezone.now()) if pending.exists() else []
            if actions or time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL_SECONDS)
        return Response({"actions": AgentActionSerializer(actions, many=True).data})


class AgentResultView(APIView):
    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        request=AgentResultSerializer,
        responses={200: AgentResultResponseSerializer},
        summary="Report how an action went",
    )
    def post(self, request: Request, execution_id: int) -> Response:
        serializer = AgentResultSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            execution = report_agent_result(
                request.auth,
                execution_id,
                token=serializer.validated_data["token"],
                ok=serializer.validated_data["ok"],
                output=serializer.validated_data["output"],
                now=timezone.now(),
            )
        except ExecutionError as exc:
            if exc.code == "not_found":
                raise exceptions.NotFound(exc.message) from exc
            raise Conflict(exc.message, code=exc.code) from exc
        return Response({"execution_id": execution.pk, "state": execution.state})
