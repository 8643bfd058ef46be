"""Hand-off out: a runbook run by AWX, Rundeck or StackStorm instead of the agent, tested
against a local HTTP receiver standing in for each: signed requests in each system's
format, a signed callback with the fencing token, and the agent's exactly-once rules.

The receivers listen on 127.0.0.1, which Warden refuses unless
WARDEN_OUTBOUND_ALLOWED_NETWORKS allows it: the `receiver` fixture allows 127.0.0.0/8,
as an operator would allow the network their AWX is on."""

import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from governance.models import ApprovalRequest, AuditEvent, Policy
from governance.policies.actions import save_policy
from remediation import handoff
from remediation.actions import save_automation_target, save_runbook
from remediation.evidence import ticket_evidence
from remediation.executions.sweeps import sweep
from remediation.models import AutomationTarget, Execution, Runbook, Ticket

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

SECRET = "s3cret-shared-with-the-automation-system"


class Receiver:
    """A local HTTP server that records each request and answers as told."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 201
        self.answer: dict[str, Any] = {"job": 42, "id": 42, "status": "pending"}
        self.delay = 0.0
        self.headers: dict[str, str] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "raw": body}
                )
                time.sleep(receiver.delay)
                payload = json.dumps(receiver.answer).encode()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index]["raw"])


LOCAL = ["127.0.0.0/8"]  # where the receivers listen: allowed as an operator would


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.WARDEN_OUTBOUND_ALLOWED_NETWORKS = LOCAL
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def signed_for(execution_id: int, raw: bytes, *, secret: str = SECRET, at: float | None = None):
    """The signature an automation system makes for execution_id's callback URL."""
    path = f"/api/v1/executions/{execution_id}/callback"
    return handoff.sign(secret, "POST", path, raw, int(at if at is not None else time.time()))


@pytest.fixture
def secrets_set(monkeypatch) -> None:
    monkeypatch.setenv("WARDEN_TARGET_TEST_SECRET", SECRET)
    monkeypatch.setenv("WARDEN_TARGET_TEST_TOKEN", "api-token-of-warden")


def run_disk_fixes_by(alice, kind: str, url: str) -> AutomationTarget:
    target = AutomationTarget(
        name=kind,
        kind=kind,
        url=url,
        credential_env="WARDEN_TARGET_TEST_TOKEN",
        secret_env="WARDEN_TARGET_TEST_SECRET",
        lease_seconds=600,
    )
    save_automation_target(
        target, actor=alice, reason="AWX runs our disk cleanup", now=timezone.now()
    )
    runbook = Runbook.objects.get(name="clean-temp-and-rotate-logs")
    runbook.handoff_target = target
    save_runbook(runbook, actor=alice, reason="AWX runs our disk cleanup", now=timezone.now())
    return target


@pytest.fixture
def awx(alice, receiver, secrets_set) -> AutomationTarget:
    return run_disk_fixes_by(alice, "awx", f"{receiver.url}/api/v2/job_templates/7/launch/")


@pytest.fixture
def callback(django_capture_on_commit_callbacks) -> Any:
    """callback(execution_id, body): the automation system's signed answer, and what it
    starts after the commit (a rollback's hand-off) run as the server would."""

    def post(
        execution_id: int,
        body: dict,
        *,
        secret: str = SECRET,
        at: float | None = None,
        signature: str | None = None,
    ):
        raw = json.dumps(body).encode()
        if signature is None:
            signature = signed_for(execution_id, raw, secret=secret, at=at)
        with django_capture_on_commit_callbacks(execute=True):
            return Client().post(
                f"/api/v1/executions/{execution_id}/callback",
                raw,
                content_type="application/json",
                headers={"X-Warden-Signature": signature},
            )

    return post


def test_an_automatic_fix_is_handed_to_awx_signed_and_in_its_format(agent, awx, receiver):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    [request] = receiver.requests
    assert request["path"] == "/api/v2/job_templates/7/launch/"
    headers = request["headers"]
    assert headers["Authorization"] == "Bearer api-token-of-warden"
    # signed over the method, the launch URL's path and the body
    assert handoff.signature_valid(
        SECRET,
        headers["X-Warden-Signature"],
        "POST",
        request["path"],
        request["raw"],
        time.time(),
        60,
    )
    warden = receiver.body()["extra_vars"]["warden"]
    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert warden["execution_id"] == execution.pk and warden["token"] == 2 * execution.pk - 1
    assert (warden["kind"], warden["action"], warden["host"]) == (
        "run",
        "clean_temp_and_rotate_logs",
        "web-01",
    )
    assert warden["commands"] == execution.commands and warden["commands"]
    assert (
        headers["Idempotency-Key"]
        == warden["idempotency_key"]
        == (f"{execution.idempotency_key}:run")
    )
    assert warden["callback_url"].endswith(f"/api/v1/executions/{execution.pk}/callback")
    # the agent is not asked to run it as well
    assert agent.take_actions() == []
    execution.refresh_from_db()
    assert (execution.state, execution.remote_reference) == ("running", "42")
    handed = AuditEvent.objects.get(action="execution.handed_off")
    assert handed.actor == "handoff:awx" and "job 42" in handed.summary
    [ran] = ticket_evidence(execution.ticket)["executions"]
    assert (ran["run_by"], ran["remote_reference"]) == ("awx", "42")


def test_the_callback_reports_and_fresh_metrics_verify_as_for_an_agent(
    agent, awx, receiver, callback
):
    agent.post_metrics(agent.sample("disk"))
    warden = receiver.body()["extra_vars"]["warden"]

    answer = callback(
        warden["execution_id"], {"token": warden["token"], "ok": True, "output": "ok"}
    )

    assert answer.status_code == 200, answer.content
    assert answer.json()["state"] == "verifying"
    agent.post_metrics(agent.sample())
    execution = Execution.objects.get(pk=warden["execution_id"])
    assert execution.state == "succeeded" and execution.output == "ok"
    assert AuditEvent.objects.filter(action="execution.verifying", actor="handoff:awx").exists()


@pytest.mark.parametrize(
    ("signing", "status"),
    [
        ({"secret": "not-the-secret"}, 401),
        ({"at": time.time() - 3600}, 401),
    ],
)
def test_a_callback_not_signed_with_the_secret_or_stale_changes_nothing(
    agent, awx, receiver, callback, signing, status
):
    agent.post_metrics(agent.sample("disk"))
    warden = receiver.body()["extra_vars"]["warden"]
    events = AuditEvent.objects.count()

    answer = callback(warden["execution_id"], {"token": warden["token"], "ok": True}, **signing)

    assert answer.status_code == status
    assert answer.json()["error"]["code"] == "bad_signature"
    assert Execution.objects.get(pk=warden["execution_id"]).state == "running"
    assert AuditEvent.objects.count() == events


def test_an_unsigned_callback_is_refused(agent, awx, receiver):
    agent.post_metrics(agent.sample("disk"))
    warden = receiver.body()["extra_vars"]["warden"]

    answer = Client().post(
        f"/api/v1/executions/{warden['execution_id']}/callback",
        {"token": warden["token"], "ok": True},
        content_type="application/json",
    )

    assert answer.status_code == 401
    assert "X-Warden-Signature" in answer.headers["WWW-Authenticate"]


def test_a_replayed_or_stale_token_callback_is_refused(agent, awx, receiver, callback):
    agent.post_metrics(agent.sample("disk"))
    warden = receiver.body()["extra_vars"]["warden"]
    good = {"token": warden["token"], "ok": True, "output": "done"}
    assert callback(warden["execution_id"], good).status_code == 200

    replay = callback(warden["execution_id"], {**good, "ok": False})
    stale = callback(warden["execution_id"], {**good, "token": warden["token"] + 5})

    assert replay.status_code == 409 and replay.json()["error"]["code"] == "not_running"
    assert stale.status_code == 409
    assert Execution.objects.get(pk=warden["execution_id"]).state == "verifying"


def test_a_failed_fix_is_rolled_back_through_the_same_system(agent, awx, receiver, callback):
    agent.post_metrics(agent.sample("disk"))
    run = receiver.body()["extra_vars"]["warden"]

    callback(run["execution_id"], {"token": run["token"], "ok": False, "output": "rc=2"})

    assert len(receiver.requests) == 2
    rollback = receiver.body()["extra_vars"]["warden"]
    assert rollback["kind"] == "rollback" and rollback["action"] == "restore_quarantined_files"
    assert rollback["token"] == run["token"] + 1
    assert rollback["idempotency_key"].endswith(":rollback")
    answer = callback(run["execution_id"], {"token": rollback["token"], "ok": True})
    assert answer.json()["state"] == "rolled_back"
    assert Ticket.objects.get(executions__pk=run["execution_id"]).status == "partially_remediated"


def test_a_refused_hand_off_cancels_and_tells_people_without_counting_a_failed_fix(
    agent, other_agent, awx, receiver
):
    receiver.status, receiver.answer = 400, {"variables_needed_to_start": ["warden"]}

    # twice, on two hosts: two failed fixes would cost the policy its autonomy
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    other_agent.post_metrics(other_agent.sample("disk"))

    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "cancelled"
    assert "hand-off refused: awx: HTTP 400" in execution.cancel_reason
    assert Ticket.objects.get(pk=execution.ticket_id).status == "escalated"
    assert Execution.objects.filter(state="cancelled").count() == 2
    assert not AuditEvent.objects.filter(action__in=["policy.demoted", "pattern.demoted"])
    assert execution.ticket.pattern.auto_remediation_attempts == 0


def test_nothing_listening_is_a_refusal(agent, alice, secrets_set, receiver):
    url = receiver.url
    receiver.server.shutdown()
    receiver.server.server_close()
    run_disk_fixes_by(alice, "awx", f"{url}/api/v2/job_templates/7/launch/")

    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "cancelled"
    assert "ConnectionRefusedError" in execution.cancel_reason


def test_an_unanswered_hand_off_is_never_resent_and_metrics_decide(agent, awx, receiver, settings):
    receiver.status = 502  # the system may or may not have started the job

    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "running"
    assert AuditEvent.objects.filter(action="execution.handoff_uncertain").exists()
    # a second delivery of the task finds nothing to claim
    assert handoff.hand_off_execution(execution.pk, timezone.now()) == "skipped"
    assert len(receiver.requests) == 1
    # past the lease the host's metrics say what happened, as for an agent gone quiet
    sweep(timezone.now() + timedelta(seconds=awx.lease_seconds + 1))
    execution.refresh_from_db()
    assert execution.state == "verifying"
    assert len(receiver.requests) == 1


def test_a_missing_secret_refuses_the_hand_off(agent, awx, receiver, monkeypatch):
    monkeypatch.delenv("WARDEN_TARGET_TEST_SECRET")

    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "cancelled"
    assert "WARDEN_TARGET_TEST_SECRET is not set" in execution.cancel_reason
    assert receiver.requests == []


@pytest.mark.parametrize("name", ["SECRET_KEY", "WARDEN_AUDIT_KEY", "DATABASE_URL", "EMAIL_URL"])
@pytest.mark.parametrize("field", ["credential_env", "secret_env"])
def test_a_target_may_not_name_wardens_own_settings(alice, receiver, field, name):
    target = AutomationTarget(
        name="exfiltrate",
        kind="webhook",
        url=f"{receiver.url}/hooks/warden",
        credential_env="WARDEN_TARGET_TEST_TOKEN",
        secret_env="WARDEN_TARGET_TEST_SECRET",
    )
    setattr(target, field, name)

    with pytest.raises(ValidationError) as refused:
        save_automation_target(target, actor=alice, reason="try it", now=timezone.now())

    assert "WARDEN_TARGET_" in " ".join(refused.value.message_dict[field])
    assert not AutomationTarget.objects.filter(name="exfiltrate").exists()


def test_a_target_naming_a_setting_past_the_admin_sends_nothing(agent, awx, receiver, monkeypatch):
    # A row written before the rule, or by SQL: the hand-off refuses it and sends nothing.
    monkeypatch.setenv("SECRET_KEY", "the-secret-key-of-warden")
    AutomationTarget.objects.filter(pk=awx.pk).update(credential_env="SECRET_KEY")

    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "cancelled"
    assert "SECRET_KEY is not a WARDEN_TARGET_ variable" in execution.cancel_reason
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("kind", "path", "auth_header", "auth_value"),
    [
        ("rundeck", "/api/41/job/2f8a/run", "X-Rundeck-Auth-Token", "api-token-of-warden"),
        ("stackstorm", "/api/v1/webhooks/warden", "St2-Api-Key", "api-token-of-warden"),
        ("webhook", "/hooks/warden", "Authorization", "Bearer api-token-of-warden"),
    ],
)
def test_rundeck_stackstorm_and_webhooks_get_their_own_formats(
    agent, alice, receiver, secrets_set, kind, path, auth_header, auth_value
):
    receiver.answer = {"id": 812, "permalink": "http://rundeck/execution/show/812"}
    run_disk_fixes_by(alice, kind, receiver.url + path)

    agent.post_metrics(agent.sample("disk"))

    [request] = receiver.requests
    assert request["path"] == path and request["headers"][auth_header] == auth_value
    body = receiver.body()
    if kind == "rundeck":
        options = body["options"]
        assert all(isinstance(value, str) for value in options.values())
        execution = Execution.objects.get(pk=int(options["warden_execution_id"]))
        assert options["warden_kind"] == "run"
        assert options["warden_token"] == str(execution.fencing_token)
        assert execution.remote_reference == "812 http://rundeck/execution/show/812"
    else:
        assert body["warden"]["action"] == "clean_temp_and_rotate_logs"


def test_editing_the_target_voids_approvals_of_what_runs_through_it(agent, alice, awx, receiver):
    # the firewall runbook runs through the target and its change waits for people
    firewall = Runbook.objects.get(name="apply-firewall-change")
    firewall.handoff_target = awx
    save_runbook(firewall, actor=alice, reason="AWX owns firewalls", now=timezone.now())
    agent.post_metrics(agent.sample("firewall"))
    pending = ApprovalRequest.objects.get(status="pending")

    awx.url = receiver.url + "/api/v2/job_templates/99/launch/"
    save_automation_target(awx, actor=alice, reason="new template", now=timezone.now())

    pending.refresh_from_db()
    assert pending.status == "voided"
    assert "automation target awx changed (url" in pending.void_reason


# -- the callback's signature names its execution (issue: a callback signed for one
# execution was accepted for another) --------------------------------------------------


@pytest.fixture
def two_at_once(alice) -> None:
    """The disk policy lets both test hosts be fixed at once (its blast radius)."""
    policy = Policy.objects.get(category="disk", enabled=True)
    policy.blast_radius_max_percent = 100.0
    save_policy(policy, actor=alice, reason="two hosts at once is fine", now=timezone.now())


def test_a_callback_captured_for_one_execution_is_refused_at_anothers(
    agent, other_agent, two_at_once, awx, receiver, callback
):
    # two hosts' disk fixes handed off to AWX
    agent.post_metrics(agent.sample("disk"))
    other_agent.post_metrics(other_agent.sample("disk"))
    first, second = (request["raw"] for request in receiver.requests)
    a = json.loads(first)["extra_vars"]["warden"]
    b = json.loads(second)["extra_vars"]["warden"]
    # the failure report AWX sent for A, signed for A's callback URL
    captured = {"token": a["token"], "ok": False}
    signature = signed_for(a["execution_id"], json.dumps(captured).encode())
    events = AuditEvent.objects.count()

    # replayed within the signature's max age to B's callback URL
    answer = callback(b["execution_id"], captured, signature=signature)

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "bad_signature"
    other = Execution.objects.get(pk=b["execution_id"])
    assert other.state == "running" and len(receiver.requests) == 2  # no rollback sent
    assert AuditEvent.objects.count() == events
    assert not AuditEvent.objects.filter(action__in=["policy.demoted", "pattern.demoted"])


def test_no_two_executions_share_a_fencing_token(
    agent, other_agent, two_at_once, awx, receiver, callback
):
    agent.post_metrics(agent.sample("disk"))
    other_agent.post_metrics(other_agent.sample("disk"))
    a, b = (json.loads(r["raw"])["extra_vars"]["warden"] for r in receiver.requests)
    assert a["token"] != b["token"]

    # even signed for B's own URL, A's token is stale at B: B's fix is not failed
    answer = callback(b["execution_id"], {"token": a["token"], "ok": False})

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "stale_token"
    assert Execution.objects.get(pk=b["execution_id"]).state == "running"
    # and each execution's rollback claims a token above its run's
    callback(a["execution_id"], {"token": a["token"], "ok": False})
    rollback = receiver.body()["extra_vars"]["warden"]
    assert rollback["kind"] == "rollback" and rollback["token"] > a["token"]
    assert rollback["token"] not in (a["token"], b["token"])


def test_a_v1_signature_over_the_body_alone_is_refused(agent, awx, receiver, callback):
    agent.post_metrics(agent.sample("disk"))
    warden = receiver.body()["extra_vars"]["warden"]
    body = {"token": warden["token"], "ok": True}
    raw = json.dumps(body).encode()
    now = int(time.time())
    v1 = hmac.new(SECRET.encode(), f"{now}.".encode() + raw, hashlib.sha256).hexdigest()

    answer = callback(warden["execution_id"], body, signature=f"t={now},v1={v1}")

    assert answer.status_code == 401
    assert Execution.objects.get(pk=warden["execution_id"]).state == "running"


def test_the_launch_request_is_signed_over_its_own_path(agent, awx, receiver):
    agent.post_metrics(agent.sample("disk"))
    [request] = receiver.requests
    header = request["headers"]["X-Warden-Signature"]

    assert handoff.signature_valid(
        SECRET, header, "POST", "/api/v2/job_templates/7/launch/", request["raw"], time.time(), 60
    )
    assert not handoff.signature_valid(
        SECRET, header, "POST", "/api/v2/job_templates/8/launch/", request["raw"], time.time(), 60
    )


# -- requests out: no inside address unless allowed, no redirect followed (issue: launch
# URLs to 169.254.169.254, 127.0.0.1:6379 or [::1] were accepted, a 302 was followed) ----


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "127.0.0.1 is loopback"),
        ("localhost", "localhost resolves to 127.0.0.1: 127.0.0.1 is loopback"),
        ("[::1]", "::1 is loopback"),
        ("169.254.169.254", "169.254.169.254 is link-local"),
        ("10.0.0.7", "10.0.0.7 is private"),
        ("[::ffff:127.0.0.1]", "is loopback (as 127.0.0.1)"),
    ],
)
def test_an_inside_address_is_refused_by_default_and_nothing_is_sent(
    agent, alice, receiver, secrets_set, settings, host, why
):
    settings.WARDEN_OUTBOUND_ALLOWED_NETWORKS = []  # the default
    port = receiver.server.server_port
    run_disk_fixes_by(alice, "awx", f"http://{host}:{port}/api/v2/job_templates/7/launch/")

    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "cancelled"
    assert why in execution.cancel_reason
    assert "WARDEN_OUTBOUND_ALLOWED_NETWORKS does not allow it" in execution.cancel_reason
    assert receiver.requests == []
    assert not AuditEvent.objects.filter(action__in=["policy.demoted", "pattern.demoted"])


def test_a_network_the_operator_allows_is_reached(agent, awx, receiver, settings):
    settings.WARDEN_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]

    agent.post_metrics(agent.sample("disk"))

    assert len(receiver.requests) == 1


def test_a_redirect_from_the_target_is_not_followed(agent, awx, receiver, settings):
    elsewhere = Receiver()
    try:
        receiver.status = 302
        receiver.headers = {"Location": f"{elsewhere.url}/steal"}

        [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()

    assert len(receiver.requests) == 1
    assert elsewhere.requests == []  # neither the API token nor the signature went there
    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    assert execution.state == "cancelled" and execution.remote_reference == ""
    assert "redirected to" in execution.cancel_reason
    assert "not followed" in execution.cancel_reason
    assert not AuditEvent.objects.filter(action="execution.handed_off")


@pytest.mark.parametrize(
    ("url", "production", "error"),
    [
        ("ftp://awx.example.com/launch/", False, "http:// or https://"),
        ("https://admin:pw@awx.example.com/launch/", False, "credentials"),
        ("http://awx.example.com/launch/", True, "https://"),
    ],
)
def test_saving_a_target_refuses_a_url_warden_would_not_send_to(
    alice, settings, url, production, error
):
    settings.PRODUCTION = production
    target = AutomationTarget(
        name="bad-url", kind="awx", url=url, secret_env="WARDEN_TARGET_TEST_SECRET"
    )

    with pytest.raises(ValidationError) as refused:
        save_automation_target(target, actor=alice, reason="try it", now=timezone.now())

    assert error in " ".join(refused.value.message_dict["url"])
    assert not AutomationTarget.objects.filter(name="bad-url").exists()


def test_the_admin_names_the_launch_url_field_it_refuses(alice, client):
    client.force_login(alice)

    page = client.post(
        "/admin/remediation/automationtarget/add/",
        {
            "name": "metadata",
            "kind": "webhook",
            "url": "http://user:pw@169.254.169.254/latest/meta-data/",
            "secret_env": "WARDEN_TARGET_TEST_SECRET",
            "lease_seconds": 600,
            "enabled": "on",
            "change_reason": "try it",
        },
    )

    assert page.status_code == 200
    assert "credentials" in " ".join(page.context["adminform"].form.errors["url"])
    assert not AutomationTarget.objects.filter(name="metadata").exists()


def test_the_address_checked_is_the_one_connected_to(
    agent, alice, receiver, secrets_set, monkeypatch
):
    # a name that resolves to an allowed address when checked, and to another one after
    # (DNS rebinding): Warden connects to the address it checked, and asks once
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "awx.internal.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return real("127.0.0.1" if len(lookups) == 1 else "10.66.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = receiver.server.server_port
    url = f"http://awx.internal.test:{port}/api/v2/job_templates/7/launch/"
    run_disk_fixes_by(alice, "awx", url)

    agent.post_metrics(agent.sample("disk"))

    [request] = receiver.requests
    assert request["headers"]["Host"] == f"awx.internal.test:{port}"
    assert lookups == ["awx.internal.test"]


def certificate_authority(tmp_path, name: str) -> tuple[str, ssl.SSLContext]:
    """A CA file to trust, and a server context with a certificate it signed for `name`."""
    now = datetime.now(UTC)

    def issue(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.DNSName(subject)])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("Test CA", ca_key, "Test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue(name, key, "Test CA", ca_key, ca=False)
    ca_file, cert_file, key_file = (tmp_path / f for f in ("ca.pem", "cert.pem", "key.pem"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return str(ca_file), server


@pytest.mark.parametrize(
    ("certificate_for", "sent"), [("awx.internal.test", True), ("other.example", False)]
)
def test_tls_to_the_pinned_address_still_verifies_the_host_name(
    agent, alice, secrets_set, settings, monkeypatch, tmp_path, certificate_for, sent
):
    settings.WARDEN_OUTBOUND_ALLOWED_NETWORKS = LOCAL
    ca_file, server_context = certificate_authority(tmp_path, certificate_for)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # the CA is trusted, as a site's would be
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: real("127.0.0.1" if host == "awx.internal.test" else host, *a, **k),
    )
    receiver = Receiver(tls=server_context)
    try:
        port = receiver.server.server_port
        url = f"https://awx.internal.test:{port}/api/v2/job_templates/7/launch/"
        run_disk_fixes_by(alice, "awx", url)

        [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()

    execution = Execution.objects.get(ticket__ticket_id=result["ticket_id"])
    if sent:
        assert len(receiver.requests) == 1 and execution.state == "running"
    else:
        # the certificate is not the host name's: nothing is sent, the hand-off refused
        assert receiver.requests == [] and execution.state == "cancelled"
        assert "certificate" in execution.cancel_reason.lower()
