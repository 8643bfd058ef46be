"""Hand-off out: a runbook run by an automation system people already run (AWX, Rundeck,
StackStorm, or any webhook) instead of the host's agent, under the agent's rules.

For such an execution the hand-off task is the agent. It claims the dispatched action
(or a pending rollback) exactly as an agent's poll does: under the row's lock, after the
whole dispatch check, with a lease (the target's) and a new fencing token
(remediation.executions.claims.claim_handoff). Only after that commits does it send one signed
request, in the target's format, with an Idempotency-Key that stays the same for the
action, so a system that deduplicates never runs it twice. A second delivery of the task
finds nothing to claim; a crash between the claim and the request leaves a lease that
runs out, and then the host's fresh metrics decide, as for an agent that went quiet:
nothing is ever sent twice.

The system answers through POST /api/v1/executions/{id}/callback with the token it was
given, signed with the same shared secret; the report is a compare-and-set on the token
(remediation.executions.reports.report_handoff_result), so a stale or replayed callback changes
nothing.

Signatures bind what they authorize: `X-Warden-Signature: t=<unix time>,v2=<hex
HMAC-SHA256 of "<t>.<METHOD>.<path>." + body>`, the path being the request's (with its
query, if any), so a callback signed for one execution's URL is no good at another's;
the secret from the environment variable the target names. Warden's own launch request
is signed the same way, over its launch URL's path. A v1 signature (over "<t>." + body
alone) is refused.

Requests out go through config.outbound: the launch URL's addresses are checked and
pinned, and a redirect is an answer ("refused"), never followed.
"""

import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from config import outbound
from governance.audit.errors import NotFound, Refused
from remediation.executions.claims import AgentAction, claim_handoff
from remediation.executions.reports import record_handoff_delivery, report_handoff_result
from remediation.models import (
    TARGET_ENV,
    TARGET_ENV_PREFIX,
    AutomationTarget,
    Execution,
    HandoffKind,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Warden-Signature"
SEND_LIMIT = 64 * 1024  # of a system's answer, read for its job id


class HandoffError(Refused):
    """A callback that cannot be accepted; `code` is machine-readable."""

    status = 401  # a "bad_signature": the signature is the callback's authentication
    status_by_code = {"not_found": NotFound.status}


# -- signing (plain functions) ---------------------------------------------------------


def signed_path(url: str) -> str:
    """The part of `url` a signature covers beside the method: its path and query."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _digest(secret: str, method: str, path: str, body: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, path: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for a `method` request to `path` with `body`, made at
    `timestamp`."""
    return f"t={timestamp},v2={_digest(secret, method, path, body, timestamp)}"


def signature_valid(
    secret: str, header: str, method: str, path: str, body: bytes, now: float, max_age: int
) -> bool:
    """True if `header` signs this method, path and body with `secret` and was made at
    most `max_age` s ago. Only v2 counts: a v1 signature names no path, so no execution."""
    parts = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > max_age:
        return False
    expected = _digest(secret, method, path, body, timestamp)
    return hmac.compare_digest(expected, parts.get("v2", ""))


def target_variable(name: str) -> str:
    """The value of a variable a target names; "" for a name outside TARGET_ENV_PREFIX
    (a row written before the rule, or past the admin), so it is never sent."""
    try:
        TARGET_ENV(name)
    except ValidationError:
        return ""
    return os.environ.get(name, "")


def secret_of(target: AutomationTarget) -> str:
    return target_variable(target.secret_env)


def refusal_of(target: AutomationTarget, secret: str) -> str:
    """Why nothing may be sent to `target` ("" when it may)."""
    if not target.enabled:
        return f"{target.name} is disabled"
    for name in filter(None, (target.secret_env, target.credential_env)):
        try:
            TARGET_ENV(name)
        except ValidationError:
            return f"{name} is not a {TARGET_ENV_PREFIX} variable: a target may not read it"
    if not secret:
        return f"{target.secret_env} is not set, so the request cannot be signed"
    return ""


# -- the request, in each system's format (plain functions) ----------------------------


def warden_payload(action: AgentAction, execution: Execution, callback_url: str) -> dict:
    """What the automation system is told: what to run where, and how to answer."""
    return {
        "execution_id": action.execution_id,
        "token": action.token,
        "kind": action.kind,
        "action": action.action,
        "commands": list(execution.commands) if action.kind == "run" else [],
        "runbook": action.runbook,
        "runbook_version": execution.runbook_version,
        "ticket_id": action.ticket_id,
        "host": execution.host.name,
        "idempotency_key": idempotency_key(execution, action.kind),
        "lease_expires_at": action.lease_expires_at.isoformat(),
        "callback_url": callback_url,
    }


def idempotency_key(execution: Execution, kind: str) -> str:
    """The same for every request about this run (or this rollback) of the execution."""
    return f"{execution.idempotency_key}:{kind}"


def launch_body(kind: str, warden: dict) -> dict:
    """The request body each system expects at its launch URL."""
    if kind == HandoffKind.AWX:
        # POST /api/v2/job_templates/{id}/launch/: the playbook reads extra_vars.warden
        # (the job template must prompt for variables on launch).
        return {"extra_vars": {"warden": warden}}
    if kind == HandoffKind.RUNDECK:
        # POST /api/{v}/job/{id}/run: job options are strings, named as the job defines them.
        options = {f"warden_{key}": _option(value) for key, value in warden.items()}
        return {"options": options}
    # StackStorm's webhook (POST /api/v1/webhooks/{name}) takes the trigger's payload as
    # the body; a plain webhook gets the same.
    return {"warden": warden}


def _option(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def auth_headers(kind: str, credential: str) -> dict[str, str]:
    if not credential:
        return {}
    if kind == HandoffKind.RUNDECK:
        return {"X-Rundeck-Auth-Token": credential}
    if kind == HandoffKind.STACKSTORM:
        return {"St2-Api-Key": credential}
    return {"Authorization": f"Bearer {credential}"}


def remote_reference(kind: str, answer: Any) -> str:
    """The system's id for what it started, from its answer (AWX: job; Rundeck: id)."""
    if not isinstance(answer, dict):
        return ""
    if kind == HandoffKind.AWX:
        value = answer.get("job") or answer.get("id")
    elif kind == HandoffKind.RUNDECK:
        value = answer.get("id")
        if value is not None and answer.get("permalink"):
            return f"{value} {answer['permalink']}"[:200]
    else:
        value = answer.get("id") or answer.get("trace_tag") or answer.get("execution_id")
    return "" if value is None else str(value)[:200]


@dataclass(frozen=True)
class Delivery:
    outcome: str  # sent | refused | uncertain
    detail: str
    reference: str = ""


def classify(status: int, kind: str, answer: Any) -> Delivery:
    """What an answer means: 2xx taken, 4xx certainly not started, else perhaps started."""
    if 200 <= status < 300:
        reference = remote_reference(kind, answer)
        detail = f"HTTP {status}" + (f", job {reference}" if reference else "")
        return Delivery("sent", detail, reference)
    if 400 <= status < 500:
        return Delivery("refused", f"HTTP {status}")
    return Delivery("uncertain", f"HTTP {status}")


# -- the flow ------------------------------------------------------------------------------


def hand_off_execution(execution_id: int, now: datetime) -> str:
    """The hand-off task: claim, send once, record what the send showed. Returns the state."""
    action = claim_handoff(execution_id, now)
    if action is None:
        return "skipped"
    execution = Execution.objects.select_related("host", "handoff_target").get(pk=execution_id)
    target = execution.handoff_target
    secret = secret_of(target)
    why = refusal_of(target, secret)
    delivery = Delivery("refused", why) if why else send(target, action, execution, secret)
    logger.info("hand-off of execution %s to %s: %s", execution_id, target.name, delivery)
    return record_handoff_delivery(
        execution_id,
        token=action.token,
        outcome=delivery.outcome,
        detail=f"{target.name}: {delivery.detail}",
        reference=delivery.reference,
        now=now,
    )


def callback_url(execution_id: int) -> str:
    path = reverse("execution-callback", kwargs={"execution_id": execution_id})
    return settings.WARDEN_CALLBACK_BASE_URL.rstrip("/") + path


def send(
    target: AutomationTarget, action: AgentAction, execution: Execution, secret: str
) -> Delivery:
    """One signed POST to the target's launch URL (config.outbound: checked addresses, no
    redirect followed)."""
    warden = warden_payload(action, execution, callback_url(execution.pk))
    body = json.dumps(launch_body(target.kind, warden), separators=(",", ":")).encode()
    signature = sign(secret, "POST", signed_path(target.url), body, int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "Warden hand-off",
        "Idempotency-Key": warden["idempotency_key"],
        SIGNATURE_HEADER: signature,
        **auth_headers(target.kind, target_variable(target.credential_env)),
    }
    try:
        answer = outbound.post(
            target.url,
            body,
            headers,
            timeout=settings.WARDEN_HANDOFF_TIMEOUT_SECONDS,
            limit=SEND_LIMIT,
        )
    except outbound.NotSent as refused:
        return Delivery("refused", str(refused))
    except outbound.MaybeSent as unsure:
        # A timeout or a reset may have come after the system took the request.
        return Delivery("uncertain", str(unsure))
    if answer.redirected:
        # Following it would carry the API token and the signature to wherever it points.
        where = answer.location[:200] or "nowhere"
        return Delivery(
            "refused",
            f"HTTP {answer.status}: the target redirected to {where}; redirects are not "
            "followed, nothing was sent there",
        )
    try:
        parsed = json.loads(answer.body) if answer.body else None
    except ValueError:
        parsed = None
    return classify(answer.status, target.kind, parsed)


def accept_callback(
    execution_id: int, signature: str, body: bytes, report: dict, now: datetime
) -> Execution:
    """A callback's signature checked against its execution's target, then its report
    recorded as the runner's (raises HandoffError or remediation.executions.ExecutionError)."""
    execution = (
        Execution.objects.select_related("handoff_target")
        .filter(pk=execution_id, handoff_target__isnull=False)
        .first()
    )
    if execution is None:
        raise HandoffError("not_found", f"execution {execution_id} is not handed off")
    secret = secret_of(execution.handoff_target)
    max_age = settings.WARDEN_HANDOFF_SIGNATURE_MAX_AGE_SECONDS
    # The path Warden gave this execution, not the one asked for: a signature made for
    # another execution's callback URL does not sign this one.
    path = signed_path(callback_url(execution.pk))
    valid = secret and signature_valid(
        secret, signature, "POST", path, body, now.timestamp(), max_age
    )
    if not valid:
        raise HandoffError(
            "bad_signature",
            f"{SIGNATURE_HEADER} does not sign POST {path} and this body with "
            f"{execution.handoff_target.name}'s secret as v2 (or is older than {max_age} s)",
        )
    return report_handoff_result(
        execution, token=report["token"], ok=report["ok"], output=report["output"], now=now
    )
