"""GET /api/v1/agent/actions: an agent's long poll, served asynchronously.

While it waits, a poll is an asyncio.Event in its web process (remediation/
wakeups.py): no thread and no database connection are held, so one ASGI process
holds thousands. It looks in the database when it starts and each time it is woken,
and answers as soon as it has claimed an action, or empty when `wait` runs out.

DRF has no async views, so this is a Django view answering in the API's error shape;
AgentActionsSchema documents it in the OpenAPI schema. Under a WSGI server (sync
workers) a poll would hold a worker for its whole wait, so there it answers at once:
production routes /api/v1/agent/actions to the ASGI process (README).
"""

import asyncio
import contextlib
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions
from rest_framework.views import APIView

from config.api_errors import warden_exception_handler
from remediation.api.authentication import HostKeyAuthentication, IsAgent, host_for_request
from remediation.api.serializers import AgentActionSerializer
from remediation.choices import EXECUTION_AGENT_CLAIMABLE
from remediation.executions import AgentAction, claim_agent_actions
from remediation.models import Execution, Host
from remediation.wakeups import in_thread, waiters


def authenticate(request: HttpRequest) -> Host:
    host = host_for_request(request)
    if host is None:
        raise exceptions.NotAuthenticated("This endpoint is for host agents: send its key.")
    return host


def claim_ready_actions(host: Host) -> list[AgentAction]:
    """This host's ready actions, claimed; a plain read first, so an idle look locks nothing."""
    ready = Execution.objects.filter(host=host, state__in=list(EXECUTION_AGENT_CLAIMABLE))
    return claim_agent_actions(host, timezone.now()) if ready.exists() else []


def parse_wait(raw: str | None) -> float:
    try:
        wait = float(raw or 0)
    except ValueError:
        raise exceptions.ValidationError({"wait": ["A number of seconds is required."]}) from None
    if not 0 <= wait <= settings.WARDEN_AGENT_POLL_MAX_SECONDS:
        raise exceptions.ValidationError(
            {"wait": [f"Must be 0 to {settings.WARDEN_AGENT_POLL_MAX_SECONDS:g} seconds."]}
        )
    return wait


def error_response(exc: exceptions.APIException) -> JsonResponse:
    response = warden_exception_handler(exc, {})
    assert response is not None  # an APIException always has a response
    json_response = JsonResponse(response.data, status=response.status_code)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        json_response["WWW-Authenticate"] = HostKeyAuthentication().authenticate_header(request={})
    return json_response


@require_GET
async def agent_actions(request: HttpRequest) -> JsonResponse:
    served_async = isinstance(request, ASGIRequest)
    # Under ASGI, database work borrows a thread of the loop's shared pool for each call;
    # under WSGI (and Django's test client) the request already has its thread: use it.
    database = in_thread if served_async else sync_to_async
    try:
        host = await database(authenticate)(request)
        wait = parse_wait(request.GET.get("wait"))
    except exceptions.APIException as exc:
        return error_response(exc)
    if not served_async:
        wait = 0.0  # a WSGI worker must not sit in a poll: answer with what is ready now
    claim = database(claim_ready_actions)
    if wait <= 0:
        actions = await claim(host)
    else:
        actions = await wait_and_claim(host, claim, wait)
    return JsonResponse({"actions": AgentActionSerializer(actions, many=True).data})


async def wait_and_claim(host: Host, claim: Any, wait: float) -> list[AgentAction]:
    """Claim the host's ready actions, waiting up to `wait` seconds for one to be announced."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with waiters.waiting(host.pk) as woken:
        while True:
            woken.clear()  # before looking: a wake-up during the look is kept
            actions = await claim(host)
            remaining = deadline - loop.time()
            if actions or remaining <= 0:
                return actions
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), remaining)


class AgentActionsSchema(APIView):
    """The OpenAPI description of agent_actions (which serves the route)."""

    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "wait",
                float,
                description="Seconds to wait for an action (0 to WARDEN_AGENT_POLL_MAX_SECONDS).",
            )
        ],
        responses={
            200: inline_serializer("AgentActions", {"actions": AgentActionSerializer(many=True)})
        },
        summary="Take this host's ready actions (long poll)",
    )
    def get(self, request: Any) -> Any:  # pragma: no cover - agent_actions serves the route
        raise NotImplementedError


# drf-spectacular documents a route by its view's `cls`.
agent_actions.cls = AgentActionsSchema  # type: ignore[attr-defined]
agent_actions.initkwargs = {}  # type: ignore[attr-defined]
