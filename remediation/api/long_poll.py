"""GET /api/v1/agent/actions: an agent's long poll.

Under ASGI (the live process, and the embedded mode's one server) the route is
served by `long_poll_app`, a plain ASGI application placed before Django in
config/asgi.py. While it waits, a poll is an asyncio.Event in its process
(remediation/wakeups.py): no thread and no database connection are held, so one
process holds thousands. Django's own ASGI handler would hold a thread for each
request in flight (its request signals run sync receivers in a per-request thread),
and its middleware has nothing to add to an agent's JSON poll. The poll looks in the
database when it starts and each time it is woken, and answers as soon as it has
claimed an action, or empty when `wait` runs out.

Under WSGI (the web process's sync workers, and Django's test client) the Django
view `agent_actions` answers at once with what is ready: a sync worker must not sit
in a poll, so production routes this path to the live process (README).

Both answer in the API's shape and error shape, through the same functions;
AgentActionsSchema documents the route in the OpenAPI schema (DRF has no async views).
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, JsonResponse
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions
from rest_framework.views import APIView

from config.api_errors import error_answer, error_responses
from remediation.api.authentication import (
    HostKeyAuthentication,
    IsAgent,
    bearer_key,
    enabled_host,
    hosts_by_key_hashes,
)
from remediation.api.serializers import AgentActionSerializer
from remediation.choices import ready_for_agents
from remediation.executions.claims import AgentAction, claim_agent_actions
from remediation.models import Execution, Host, hash_api_key
from remediation.wakeups import in_thread, waiters

PATH = "/api/v1/agent/actions"


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


def ready_executions() -> Any:
    # An automation system, not the agent, runs a handed-off execution (remediation.handoff).
    return Execution.objects.filter(ready_for_agents(timezone.now()), handoff_target__isnull=True)


def start_poll(authorization: bytes) -> tuple[Host, list[AgentAction]]:
    """Authenticate and take what is ready: one query when nothing is (a poll's usual start)."""
    key = bearer_key(authorization)
    if key is None:
        raise exceptions.NotAuthenticated("This endpoint is for host agents: send its key.")
    host = enabled_host(
        Host.objects.defer("allowlist")
        .annotate(ready=Exists(ready_executions().filter(host=OuterRef("pk"))))
        .filter(api_key_hash=hash_api_key(key))
        .first()
    )
    return host, claim_agent_actions(host, timezone.now()) if host.ready else []


def claim_ready_actions(host_id: int, authorization: bytes) -> list[AgentAction]:
    """The host's ready actions, claimed, after checking its key again (a renewed poll may
    have been let in by KnownKeys); a plain read first, so an idle look locks nothing."""
    host, actions = start_poll(authorization)
    if host.pk != host_id:
        raise exceptions.AuthenticationFailed("This key now belongs to another host.")
    return actions


@dataclass(frozen=True)
class KnownKey:
    host_id: int
    until: float  # loop time


class KnownKeys:
    """Agent keys this process checked recently, by hash, so that renewing an idle poll
    needs no database look: a renewal lets in a key it knows and waits; anything it
    claims checks the key in the database again (claim_ready_actions). A key revoked or
    a host disabled meanwhile keeps an empty poll open at most KNOWN_KEY_SECONDS, but
    receives nothing.

    Keys it does not know (every agent's first poll, a fleet reconnecting after a
    restart) are looked up together: a poll that brings one waits up to KEY_LOOKUP_WAIT
    seconds for others, and one query (at most KEY_LOOKUP_BATCH keys) answers them all,
    instead of a thread and a query each.
    """

    def __init__(self) -> None:
        self.keys: dict[str, KnownKey] = {}
        self.unknown: dict[str, asyncio.Future] = {}  # key hash: its pending lookup
        self.lookup: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def host_id(self, authorization: bytes) -> int:
        """The id of the enabled host whose key `authorization` carries; raises
        NotAuthenticated or AuthenticationFailed as host_for_authorization does."""
        key = bearer_key(authorization)
        if key is None:
            raise exceptions.NotAuthenticated("This endpoint is for host agents: send its key.")
        key_hash = hash_api_key(key)
        loop = asyncio.get_running_loop()
        known = self.keys.get(key_hash)
        if known is not None and known.until > loop.time():
            return known.host_id
        if self.loop is not loop:  # one lookup per event loop: a test suite starts several
            self.loop, self.unknown, self.lookup = loop, {}, None
        future = self.unknown.get(key_hash)
        if future is None:
            future = self.unknown[key_hash] = loop.create_future()
        if self.lookup is None or self.lookup.done():
            self.lookup = loop.create_task(self._look_up())
        # shield: one poll going away must not cancel the answer others wait for
        host_id, name, enabled = await asyncio.shield(future)
        if host_id is None:
            raise exceptions.AuthenticationFailed("Unknown API key.")
        if not enabled:
            raise exceptions.AuthenticationFailed(f"Host {name} is disabled.")
        return host_id

    def forget(self, authorization: bytes) -> None:
        """Forget a key whose host the database no longer gives it (claim_ready_actions)."""
        with contextlib.suppress(exceptions.APIException):
            key = bearer_key(authorization)
            if key is not None:
                self.keys.pop(hash_api_key(key), None)

    async def _look_up(self) -> None:
        """Answer the waiting keys, KEY_LOOKUP_BATCH at a time, until none waits."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(KEY_LOOKUP_WAIT)
        while self.unknown:
            batch = dict(list(self.unknown.items())[:KEY_LOOKUP_BATCH])
            for key_hash in batch:
                del self.unknown[key_hash]
            try:
                found = await in_thread(hosts_by_key_hashes)(batch)
            except Exception as exc:  # the database is away: each poll answers its error
                for future in batch.values():
                    future.set_exception(exc)
                    future.exception()  # retrieved here if no poll waits any more
                continue
            now = loop.time()
            if len(self.keys) > KNOWN_KEYS_KEPT:
                self.keys = {h: k for h, k in self.keys.items() if k.until > now}
            for key_hash, future in batch.items():
                host_id, name, enabled = found.get(key_hash, (None, None, False))
                if host_id is not None and enabled:
                    self.keys[key_hash] = KnownKey(host_id, now + KNOWN_KEY_SECONDS)
                future.set_result((host_id, name, enabled))


# Several of an agent's renewals (its poll's wait, at most WARDEN_AGENT_POLL_MAX_SECONDS),
# so an idle agent's key is looked up every few minutes, not at every renewal.
KNOWN_KEY_SECONDS = 300.0
KNOWN_KEYS_KEPT = 50_000
# A first poll waits this long for others to look up with it (a poll waits seconds for an
# action anyway): 200 agents starting a second cost 20 queries, not 200; a fleet
# reconnecting at once costs one query per KEY_LOOKUP_BATCH agents.
KEY_LOOKUP_WAIT = 0.05
KEY_LOOKUP_BATCH = 1000
known_keys = KnownKeys()


def actions_body(actions: list[AgentAction]) -> dict[str, Any]:
    if not actions:
        return {"actions": []}
    return {"actions": AgentActionSerializer(actions, many=True).data}


def error_body(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of an error, as the rest of the API answers it: a database
    that went away is a 503 with Retry-After, not a plain-text 500 from the server."""
    status, body, headers = error_answer(exc)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = HostKeyAuthentication().authenticate_header(None)
    return status, body, headers


async def poll(authorization: bytes, wait: float) -> list[AgentAction]:
    """Authenticate, then claim the host's ready actions, waiting up to `wait` seconds for one.

    A renewal by an agent this process knows, with nothing ready as far as the
    process's listener knows, goes straight to waiting: no thread, no query. An
    announcement that comes while the first look runs is kept by the waiters' memory
    of announcements (remediation/wakeups.py). Raises APIException.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    host_id = await known_keys.host_id(authorization)
    actions: list[AgentAction] = []
    claim = in_thread(claim_ready_actions)
    if not waiters.nothing_ready(host_id):
        try:
            actions = await claim(host_id, authorization)
        except exceptions.AuthenticationFailed:
            known_keys.forget(authorization)
            raise
        waiters.claimed(host_id)
    if actions or wait <= 0:
        return actions
    # Set already if the host was announced while start_poll looked.
    with waiters.waiting(host_id, since=started) as woken:
        while not actions:
            remaining = started + wait - loop.time()
            try:
                await asyncio.wait_for(woken.wait(), max(remaining, 0))
            except TimeoutError:
                break  # nothing announced: nothing to look for
            woken.clear()  # before looking: a wake-up during the look is kept
            actions = await claim(host_id, authorization)
            waiters.claimed(host_id)
    return actions


@require_GET
def agent_actions(request: HttpRequest) -> JsonResponse:
    """The WSGI side: what is ready now, never a wait."""
    try:
        parse_wait(request.GET.get("wait"))
        _, actions = start_poll(request.headers.get("Authorization", "").encode("latin-1"))
    except exceptions.APIException as exc:
        status, body, headers = error_body(exc)
        return JsonResponse(body, status=status, headers=headers)
    return JsonResponse(actions_body(actions))


async def long_poll_app(scope: dict, receive: Callable, send: Callable) -> None:
    """The ASGI side: the whole poll on the event loop, database work in pooled threads."""
    headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
    status, body, extra = 200, {}, {}
    host_header = headers.get("host", b"").decode("latin-1")
    if scope["method"] not in ("GET", "HEAD"):
        status, body, extra = 405, _error("method_not_allowed", "Use GET."), {"Allow": "GET"}
    elif not _allowed_host(host_header):
        status, body = 400, _error("bad_host", f"Host {host_header!r} is not allowed.")
    else:
        await _read_request(receive)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            wait = parse_wait(query.get("wait", [None])[0])
            actions = await _until_disconnected(
                receive, poll(headers.get("authorization", b""), wait)
            )
        except Exception as exc:  # every error in the API's shape, a database gone too
            status, body, extra = error_body(exc)
        else:
            if actions is None:
                # The agent went away. An action claimed that very instant is never
                # said started, so it is offered again once its start window passes.
                return
            body = actions_body(actions)
    payload = json.dumps(body, cls=DjangoJSONEncoder).encode()
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in extra.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": payload})


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": {}}}


def _allowed_host(host_header: str) -> bool:
    domain, _ = split_domain_port(host_header)
    allowed = settings.ALLOWED_HOSTS or (
        [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
    )
    return bool(domain) and validate_host(domain, allowed)


async def _read_request(receive: Callable) -> None:
    """Consume the request's body messages (a GET's is empty)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _until_disconnected(receive: Callable, waiting: Awaitable[Any]) -> Any:
    """The result of `waiting`, or None if the client disconnects first (it is cancelled)."""
    task = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(receive())
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    finally:
        gone.cancel()


class AgentActionsSchema(APIView):
    """The OpenAPI description of the long poll (agent_actions and long_poll_app serve it)."""

    authentication_classes = [HostKeyAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "wait",
                {
                    "type": "number",
                    "minimum": 0,
                    "maximum": settings.WARDEN_AGENT_POLL_MAX_SECONDS,
                },
                description="Seconds to wait for an action (0 to WARDEN_AGENT_POLL_MAX_SECONDS).",
            )
        ],
        responses={
            200: inline_serializer("AgentActions", {"actions": AgentActionSerializer(many=True)}),
            **error_responses(400, 401),
        },
        summary="Take this host's ready actions (long poll)",
    )
    def get(self, request: Any) -> Any:  # pragma: no cover - never routed
        raise NotImplementedError


# drf-spectacular documents a route by its view's `cls`.
agent_actions.cls = AgentActionsSchema  # type: ignore[attr-defined]
agent_actions.initkwargs = {}  # type: ignore[attr-defined]
