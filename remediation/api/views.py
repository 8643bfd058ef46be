"""The agent API: post metrics, say an action started, report results (long polls:
remediation/api/long_poll.py)."""

from datetime import UTC

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import error_responses
from remediation.api.authentication import HostKeyAuthentication, IsAgent
from remediation.api.batches import PostedBatch, parse_batch
from remediation.api.serializers import (
    AgentResultResponseSerializer,
    AgentResultSerializer,
    AgentStartResponseSerializer,
    AgentStartSerializer,
    AllowlistResponseSerializer,
    AllowlistSerializer,
    MetricsResponseSerializer,
)
from remediation.executions.claims import start_agent_action
from remediation.executions.reports import RunReport, report_agent_result
from remediation.hosts import allowlist_problems, record_allowlist
from remediation.models import Host
from remediation.pipeline import ingest_samples
from remediation.sample_batches import SampleVerdict

# Executions are numbered from 1; the path takes nothing else.
EXECUTION_ID = OpenApiParameter(
    "execution_id", {"type": "integer", "minimum": 1}, OpenApiParameter.PATH
)


def verdict_json(verdict: SampleVerdict) -> dict:
    """A verdict as MetricsResponseSerializer documents it, built directly: a batch's
    answer is on every agent's hot path, and a serializer costs ~10 us per field."""
    return {
        "taken_at": verdict.taken_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "severity": verdict.severity,
        "confidence": verdict.confidence,
        "category": verdict.category,
        "decision": verdict.decision,
        "ticket_id": verdict.ticket_id,
        "explanation": [[name, value] for name, value in verdict.explanation],
        "duplicate": verdict.duplicate,
        "problems": [
            {"category": category, "decision": decision, "ticket_id": ticket_id}
            for category, decision, ticket_id in verdict.problems
        ],
    }


class MetricsView(APIView):
    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        request=PostedBatch,
        responses={201: MetricsResponseSerializer, **error_responses(400, 401, 403, 503)},
        summary="Post one metric sample or a batch of them",
        description=(
            "403: the key's host may post only its own samples. 503: no approved model "
            "(or the database is busy); nothing was stored, so the agent sends it again."
        ),
    )
    def post(self, request: Request) -> Response:
        host: Host = request.auth
        readings, many = parse_batch(request.body)
        names = {reading.host for reading in readings}
        # The usual case, an agent posting its own samples, needs no query here.
        known = (
            names
            if names == {host.name}
            else set(Host.objects.filter(name__in=names).values_list("name", flat=True))
        )
        unknown = {
            f"[{i}].host" if many else "host": [f"Unknown host {reading.host!r}."]
            for i, reading in enumerate(readings)
            if reading.host not in known
        }
        if unknown:
            raise exceptions.ValidationError(unknown)
        if names != {host.name}:
            others = ", ".join(sorted(names - {host.name}))
            raise exceptions.PermissionDenied(
                f"This key belongs to {host.name}; it cannot post samples for {others}."
            )
        verdicts = ingest_samples(host, readings, timezone.now())
        body = {"host": host.name, "results": [verdict_json(verdict) for verdict in verdicts]}
        return Response(body, status=status.HTTP_201_CREATED)


class AgentResultView(APIView):
    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        request=AgentResultSerializer,
        parameters=[EXECUTION_ID],
        responses={200: AgentResultResponseSerializer, **error_responses(400, 401, 404, 409)},
        summary="Report how an action went",
        description="409: the token is stale, the execution is no longer running, or the "
        "argv reported is not the one sent (argv_mismatch: the report is refused, the "
        "execution ends and people are told).",
    )
    def post(self, request: Request, execution_id: int) -> Response:
        serializer = AgentResultSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        report = RunReport(
            ok=data["ok"],
            output=data["output"],
            argv=list(data["argv"]),
            argv_digest=data["argv_digest"],
            exit_code=data["exit_code"],
            not_started=data["not_started"],
        )
        execution = report_agent_result(
            request.auth, execution_id, report, token=data["token"], now=timezone.now()
        )
        return Response({"execution_id": execution.pk, "state": execution.state})


class AgentStartView(APIView):
    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        request=AgentStartSerializer,
        parameters=[EXECUTION_ID],
        responses={200: AgentStartResponseSerializer, **error_responses(400, 401, 404, 409)},
        summary="Say an action taken is starting now",
        description="Before it runs anything, the agent says it is starting the action (or "
        "rollback) it took; it runs it only on a 200. Saying it again answers the same. "
        "409 stale_token: another claim holds it; 409 not_claimed: it was offered again, "
        "cancelled or held meanwhile (a pause, a check that no longer passes): do not run it.",
    )
    def post(self, request: Request, execution_id: int) -> Response:
        serializer = AgentStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        started = start_agent_action(
            request.auth,
            execution_id,
            token=serializer.validated_data["token"],
            now=timezone.now(),
        )
        return Response(AgentStartResponseSerializer(started).data)


def allowlist_json(host: Host) -> dict:
    return {
        "host": host.name,
        "entries": host.allowlist if host.allowlist_digest else {},
        "digest": host.allowlist_digest,
        "reported_at": host.allowlist_reported_at,
    }


class AgentAllowlistView(APIView):
    """What the host's agent allows: reported when it starts, read back by `warden-agent check`."""

    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        responses={200: AllowlistResponseSerializer, **error_responses(401, 403)},
        summary="The allow-list Warden holds for this agent's host",
    )
    def get(self, request: Request) -> Response:
        return Response(AllowlistResponseSerializer(allowlist_json(request.auth)).data)

    @extend_schema(
        request=AllowlistSerializer,
        responses={200: AllowlistResponseSerializer, **error_responses(400, 401, 403)},
        summary="Report the agent's allow-list (each action and its command template)",
        description="Decisions flag a runbook this host's agent would refuse before anyone "
        "approves it. 400 names the entry that is not a valid command template, or a digest "
        "that is not the entries'.",
    )
    def put(self, request: Request) -> Response:
        serializer = AllowlistSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        problems = allowlist_problems(data["entries"], data["digest"])
        if problems:
            raise exceptions.ValidationError(problems)
        host = record_allowlist(
            request.auth,
            {name: list(argv) for name, argv in data["entries"].items()},
            agent_version=data["agent_version"],
            now=timezone.now(),
        )
        return Response(AllowlistResponseSerializer(allowlist_json(host)).data)
