"""The permission matrix: every admin URL, API endpoint and websocket route, for every role.

Generated at collection from the admin registry (each ModelAdmin's URLs and actions, and
the admin site's own pages) and from the URL configuration and the ASGI websocket routes,
so a model, action or endpoint added later is covered without editing this file.

Roles: a supervisor, an approver, compliance (view only), staff without permissions, an
anonymous visitor, an agent (its host's key; it opens no admin session), and the service
roles, each a user with no password sending its API token: an integrator, an alert sender,
and an integrator also put in the approvers role (a service's user never approves). A token
opens no admin session, so the service roles are sent to every URL outside the admin.

For each (URL, method, role) the database is fingerprinted before and after the request:
either nothing changed, or it changed and the audit log grew with an event naming a
changed object (or the row it belongs to). Compliance, staff without permissions and
anonymous visitors change nothing anywhere, and an agent's key changes nothing through
the admin, audited or not; an approver's changes are approvals (and the executions they
queue). A service role never approves: its changes are the tickets it opens, the alerts it
sends and the feedback it gives, with what they start. A websocket is accepted only for a
role that may view the audit log.

The world is built once per class: people in each role, two model versions (one serving),
a host whose agent went through the real API (a disk fix verified, a memory fix running, a
DNS change waiting for approval, requested by nobody), a pause, feedback, patterns and
django-q rows; every row with history is edited once, so its history has an older version
to revert to. Each case runs in a transaction rolled back afterwards (a savepoint inside
the world's), so each starts from the same fresh world.
"""

import asyncio
import collections
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.auth.tokens import default_token_generator
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import connection, models, transaction
from django.test import Client, TestCase, override_settings
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.regex_helper import normalize
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Task
from simple_history.models import HistoricalChanges

from config.asgi import application
from feedback.models import Feedback, FeedbackType, Pattern
from governance.models import (
    ApprovalRequest,
    ApprovalStatus,
    AuditChainHead,
    AuditCheckpoint,
    AuditEvent,
    AutonomyProposal,
    DeliveryStatus,
    NoticeDelivery,
    NoticeKind,
    NoticeLinkUse,
    Pause,
)
from governance.notices.links import sign_link
from governance.people.actions import issue_api_token
from remediation.actions import add_host
from remediation.choices import ExecutionState
from remediation.models import Alert, AutomationTarget, Execution, Host, Ticket
from scoring.actions import approve_model_version
from scoring.models import MetricSample, ModelVersion, SampleMinute, TriageModelVersion
from scoring.registry import forget_serving_model, register_training_result
from scoring.triage.actions import approve_triage_model_version
from scoring.triage.registry import forget_serving_triage_model, register_triage_result
from tests.conftest import HEALTHY, AgentClient, make_user, trust_from_the_first_ticket

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).

# The service roles: a user in these roles, with no password, sending its token.
SERVICE_ROLES = {
    "integrator": ("integrators",),
    "alert_sender": ("alert senders",),
    "approving_integrator": ("integrators", "approvers"),
}
ROLES = (
    "supervisor",
    "approver",
    "compliance",
    "staff_no_perms",
    "anonymous",
    "agent",
    *SERVICE_ROLES,
)
GROUPS = {"supervisor": "supervisors", "approver": "approvers", "compliance": "compliance"}
# Roles that change nothing, anywhere (the agent may change things through its API only).
READ_ONLY_ROLES = frozenset({"compliance", "staff_no_perms", "anonymous"})
# An approver only views, approves (governance.approve_approvalrequest) and reviews what
# Warden did by itself: the audit events its changes come with are approvals, the
# executions they queue, a rejected ticket escalated back to people, and reviews (a flag
# is feedback given in the reviewer's name).
# A service's changes: a ticket opened and what its decision starts (an approval asked
# for, an execution queued, an escalation), an alert and its ticket, feedback. Never a
# verdict on an approval.
SERVICE_EVENTS = (
    "alert.",
    "ticket.opened",
    "ticket.escalated",
    "ticket.repeated",
    "decision.made",
    "approval.requested",
    "execution.",
    "feedback.given",
)
ROLE_EVENTS = {
    "approver": ("approval.", "execution.", "ticket.escalated", "review.", "feedback.given"),
    **dict.fromkeys(SERVICE_ROLES, SERVICE_EVENTS),
}
VIEW_AUDIT_LOG = "governance.view_auditevent"
NOTE = "matrix test"  # the note of confirmed actions and any "reason for this change"


# --- The matrix, enumerated at collection --------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One URL (or one admin action posted to a changelist) and the methods sent to it."""

    id: str
    kind: str  # an admin page ("changelist", "change", "simple_history"...), "action",
    # "site" (the admin site's own pages) or "api" (everything outside the admin)
    methods: tuple[str, ...]
    model: type[models.Model] | None = None
    action: str = ""
    url_name: str = ""
    positional: int = 0  # admin model pages: how many ids the URL takes
    path_format: str = ""  # "api": the path with %(param)s placeholders
    converters: tuple[tuple[str, Any], ...] = ()
    view: Any = None  # "api": the view's class or function


@dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    method: str
    role: str

    @property
    def id(self) -> str:
        return f"{self.endpoint.id}[{self.role}-{self.method}]"


# GET-only admin pages; the rest are also posted (delete with post=yes).
GET_ONLY_PAGES = frozenset({"changelist", "history"})
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _registry() -> list[tuple[type[models.Model], admin.ModelAdmin]]:
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def admin_endpoints() -> list[Endpoint]:
    endpoints = []
    for model, model_admin in _registry():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        for pattern in model_admin.get_urls():
            if not pattern.name:
                continue  # <object_id>/ only redirects to the change page
            kind = pattern.name.removeprefix(prefix)
            get_only = kind in GET_ONLY_PAGES and not (
                kind == "changelist" and model_admin.list_editable
            )
            endpoints.append(
                Endpoint(
                    id=f"admin:{pattern.name}",
                    kind=kind,
                    methods=("GET",) if get_only else ("GET", "POST"),
                    model=model,
                    url_name=f"admin:{pattern.name}",
                    positional=pattern.pattern.regex.groups,
                )
            )
        for _function, name, _description in model_admin._get_base_actions():
            endpoints.append(
                Endpoint(
                    id=f"admin:{prefix}changelist+{name}",
                    kind="action",
                    methods=("POST",),
                    model=model,
                    action=name,
                    url_name=f"admin:{prefix}changelist",
                )
            )
    for pattern in admin.site.get_urls():
        if isinstance(pattern, URLPattern) and pattern.name:
            endpoints.append(
                Endpoint(
                    id=f"admin:{pattern.name}",
                    kind="site",
                    methods=("GET", "POST"),
                    url_name=f"admin:{pattern.name}",
                    converters=tuple(sorted(pattern.pattern.regex.groupindex.items())),
                )
            )
    return endpoints


def _walk(
    entries: list, path_format: str = "", converters: dict | None = None
) -> Iterator[tuple[str, dict, URLPattern]]:
    for entry in entries:
        piece = normalize(entry.pattern.regex.pattern)[0][0]
        known = {**(converters or {}), **getattr(entry.pattern, "converters", {})}
        if isinstance(entry, URLResolver):
            if "admin" in (entry.app_name, entry.namespace):
                continue  # enumerated from the admin registry
            yield from _walk(entry.url_patterns, path_format + piece, known)
        else:
            yield path_format + piece, known, entry


def api_endpoints() -> list[Endpoint]:
    endpoints = []
    for path_format, converters, pattern in _walk(get_resolver().url_patterns):
        callback = pattern.callback
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None) or callback
        endpoints.append(
            Endpoint(
                id="/" + PLACEHOLDER.sub(r"<\1>", path_format),
                kind="api",
                methods=("GET", "POST"),
                url_name=pattern.name or "",
                path_format=path_format,
                converters=tuple(sorted(converters.items())),
                view=view,
            )
        )
    return endpoints


def websocket_routes() -> list[str]:
    """The routes of the ASGI application's websocket router, under its middleware."""
    app = application.application_mapping["websocket"]
    while not isinstance(app, URLRouter):
        app = getattr(app, "inner", None) or app.application
    routes = []
    for route in app.routes:
        assert not isinstance(getattr(route, "callback", None), URLRouter), "nested router"
        routes.append(normalize(route.pattern.regex.pattern)[0][0])
    return routes


ADMIN_ENDPOINTS = admin_endpoints()
API_ENDPOINTS = api_endpoints()
WEBSOCKET_ROUTES = websocket_routes()
HTTP_CASES = [
    Case(endpoint, method, role)
    for endpoint in ADMIN_ENDPOINTS + API_ENDPOINTS
    for method in endpoint.methods
    for role in ROLES
    if endpoint.kind == "api" or role not in SERVICE_ROLES
]
WEBSOCKET_CASES = [(route, role) for route in WEBSOCKET_ROUTES for role in ROLES]
OUTCOMES: collections.Counter = collections.Counter()


# --- The database's fingerprint ------------------------------------------------------------

# The log itself, its signed checkpoints (an export or evidence signs the log first: a
# publication of the log, not a change of governed state), and bookkeeping. A metric
# sample is telemetry, not governed state: the stored row is its own record (host, time
# taken, time received, verdict), and whatever it causes (a ticket opened, a decision, an
# execution) is audited and fingerprinted. So are its minute summaries, merged into with it.
NOT_FINGERPRINTED = (
    AuditEvent,
    AuditChainHead,
    AuditCheckpoint,
    Session,
    LogEntry,
    MetricSample,
    SampleMinute,
)


def _in_project(app_config: Any) -> bool:
    path = Path(app_config.path).resolve()
    return path.is_relative_to(Path(settings.BASE_DIR).resolve()) and not (
        {"site-packages", ".venv"} & set(path.parts)
    )


@dataclass(frozen=True)
class Table:
    model: type[models.Model]
    sql: str  # every row, the compared columns, the primary key first
    columns: tuple[str, ...]
    parents: tuple[tuple[int, str], ...]  # (column index, model name) of each foreign key
    digest: str  # PostgreSQL: an md5 of the same rows, as a scalar subquery


def fingerprinted_tables() -> list[Table]:
    """Each model whose rows are compared, with the columns compared: every row of the
    project's apps, of every model registered in the admin, and of users, groups and their
    memberships and permissions. Not the audit log itself, sessions, admin log entries or
    history tables, nor bookkeeping: last_login, and the fields a model's history leaves
    out (the project's own word that they are not part of the audited state)."""
    chosen: list[type[models.Model]] = [
        model for config in apps.get_app_configs() if _in_project(config)
        for model in config.get_models()
    ]  # fmt: skip
    chosen += [model for model, _ in _registry()]
    chosen += [User, Group, User.groups.through, User.user_permissions.through]
    chosen += [Group.permissions.through]
    tables: dict[type[models.Model], Table] = {}
    quote = connection.ops.quote_name
    for model in chosen:
        model = model._meta.concrete_model
        if model in tables or issubclass(model, (HistoricalChanges, *NOT_FINGERPRINTED)):
            continue
        skipped = {"last_login", *history_excluded(model)}
        pk = model._meta.pk
        kept = [pk, *(f for f in model._meta.concrete_fields if f.name not in skipped | {pk.name})]
        columns = tuple(f.column for f in kept)
        parents = tuple((i, f.related_model.__name__) for i, f in enumerate(kept) if f.is_relation)
        listed, table, order = (
            ", ".join(quote(c) for c in columns),
            quote(model._meta.db_table),
            quote(pk.column),
        )
        sql = f"SELECT {listed} FROM {table} ORDER BY {order}"
        digest = (
            f"(SELECT md5(coalesce(string_agg(ROW({listed})::text, E'\\n' ORDER BY {order}), '')) "
            f"FROM {table})"
        )
        tables[model] = Table(model, sql, columns, parents, digest)
    return list(tables.values())


def history_model(model: type[models.Model]) -> Any:
    attribute = getattr(model._meta, "simple_history_manager_attribute", None)
    return getattr(model, attribute).model if attribute else None


def history_excluded(model: type[models.Model]) -> list[str]:
    historical = history_model(model)
    return list(getattr(historical, "_history_excluded_fields", None) or [])


Fingerprint = dict[Table, dict[Any, tuple]]


def digests(tables: list[Table]) -> tuple[str, ...] | None:
    """On PostgreSQL, each table's md5 over the rows it compares, in one round trip."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(table.digest for table in tables)}")
        return cursor.fetchone()


def fingerprint(
    tables: list[Table], known: Fingerprint | None = None, known_digests: Any = None
) -> Fingerprint:
    """Every row as the database stores it (raw SQL: no decoding of large JSON columns).
    With a fingerprint `known` and its digests, a table whose digest has not moved is not
    read again: a case on PostgreSQL then reads only the tables it changed."""
    now = digests(tables) if known is not None and known_digests is not None else None
    with connection.cursor() as cursor:
        result = {}
        for index, table in enumerate(tables):
            if now is not None and now[index] == known_digests[index]:
                result[table] = known[table]  # type: ignore[index]
                continue
            cursor.execute(table.sql)
            result[table] = {row[0]: row for row in cursor.fetchall()}
        return result


@dataclass(frozen=True)
class Changed:
    table: Table
    row: tuple
    how: str  # "added", "removed" or the columns changed

    def __str__(self) -> str:
        return f"{self.table.model._meta.label}#{self.row[0]} {self.how}"

    def names(self) -> set[tuple[str, str]]:
        """How an audit event names this row: itself, or a row it belongs to (an approval
        is named by its request)."""
        return {(self.table.model.__name__, str(self.row[0]))} | {
            (name, str(self.row[i])) for i, name in self.table.parents if self.row[i] is not None
        }


def differences(before: Fingerprint, after: Fingerprint) -> list[Changed]:
    changed = []
    for table, old in before.items():
        new = after[table]
        for pk in sorted(old.keys() | new.keys(), key=str):
            if pk not in old:
                changed.append(Changed(table, new[pk], "added"))
            elif pk not in new:
                changed.append(Changed(table, old[pk], "removed"))
            elif old[pk] != new[pk]:
                columns = zip(table.columns, old[pk], new[pk], strict=True)
                how = "changed " + ", ".join(c for c, a, b in columns if a != b)
                changed.append(Changed(table, new[pk], how))
    return changed


# --- The world ---------------------------------------------------------------------------


@dataclass
class World:
    root: User
    users: dict[str, User]
    host: Host
    key: str
    execution: Execution
    token: Any
    subjects: dict[type[models.Model], models.Model]
    tables: list[Table]
    requests: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # a service role's API token
    # The world's rows as built: every case starts from them (its changes are rolled back).
    as_built: Fingerprint = field(default_factory=dict)
    as_built_digests: tuple[str, ...] | None = None

    def client(self, role: str) -> Client:
        """A browser logged in as `role` (its session made with the world, so it outlives
        each case's rollback), or the agent, whose key opens no session."""
        if role == "agent":
            return Client(headers={"authorization": f"Bearer {self.key}"})
        if role in SERVICE_ROLES:
            return Client(headers={"authorization": f"Token {self.tokens[role]}"})
        browser = Client()
        if role != "anonymous":
            if role not in self.sessions:
                raise LookupError(f"no session for {role}: log in while building the world")
            browser.cookies[settings.SESSION_COOKIE_NAME] = self.sessions[role]
        return browser

    def superuser(self) -> Client:
        return self.client("root")

    def log_in_everyone(self) -> None:
        for role, user in [("root", self.root), *self.users.items()]:
            if role in SERVICE_ROLES:
                continue  # a token, never a session
            browser = Client()
            browser.force_login(user)
            self.sessions[role] = browser.cookies[settings.SESSION_COOKIE_NAME].value


def edit_once(obj: models.Model) -> bool:
    """Change one plain field and save, so the row's history has an older version that
    differs from it (reverting to it really changes something). False if none fits."""
    model = type(obj)
    excluded = set(history_excluded(model))
    for f in model._meta.concrete_fields:
        if f.primary_key or f.unique or f.choices or not f.editable or f.is_relation:
            continue
        if f.name in excluded:
            continue
        value = getattr(obj, f.attname)
        if isinstance(f, models.CharField | models.TextField) and value is not None:
            if f.max_length and len(value) + 7 > f.max_length:
                continue
            new: Any = value + "-edited"
        elif isinstance(f, models.JSONField) and isinstance(value, dict):
            new = {**value, "edited": "yes"}
        elif isinstance(f, models.JSONField) and isinstance(value, list):
            new = [*value, "edited"]
        elif isinstance(f, models.DateTimeField) and value is not None:
            new = value + timedelta(hours=1)
        else:
            continue
        setattr(obj, f.attname, new)
        obj.save()
        return True
    return False


def service_user(username: str, groups: tuple[str, ...]) -> User:
    """A service's user: no password, in its roles; it signs in with a token only."""
    user = User.objects.create_user(username)
    user.set_unusable_password()
    user.save()
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def build_world(trained_model: Any, trained_triage_model: Any) -> World:
    now = timezone.now()
    # Built once per class, before any function fixture: the disk fix below runs by itself.
    trust_from_the_first_ticket()
    root = User.objects.create_superuser("root", "root@example.com", "pw")
    users = {role: make_user(role, group) for role, group in GROUPS.items()}
    users["staff_no_perms"] = User.objects.create_user("staff_no_perms", is_staff=True)
    tokens = {}
    for role, groups in SERVICE_ROLES.items():
        users[role] = service_user(role, groups)
        _, tokens[role] = issue_api_token(
            users[role], actor=None, expiry_days=30, reason="matrix", now=now
        )

    forget_serving_model()
    serving = register_training_result(trained_model, actor="system:test")
    approve_model_version(serving, actor=None, now=now, reason="")
    register_training_result(trained_model, actor="system:test")  # a candidate, not serving
    forget_serving_triage_model()
    serving_triage = register_triage_result(trained_triage_model, actor="system:test")
    approve_triage_model_version(serving_triage, actor=None, now=now, reason="")

    host, key = add_host("web-01", labels={"env": "test"}, now=timezone.now())
    agent = AgentClient(Client(), host, key, TestCase.captureOnCommitCallbacks)
    # a disk fix that ran and was verified (one to roll back) ...
    [healed] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [finished] = agent.take_actions()
    assert agent.report(finished, ok=True).status_code == 200
    agent.post_metrics(agent.sample())
    # ... a memory fix running on the host (its agent holds the token) ...
    agent.post_metrics(agent.sample("memory"))
    [action] = agent.take_actions()
    # ... and a DNS change waiting for people.
    [waiting] = agent.post_metrics(agent.sample("dns")).json()["results"]
    execution = Execution.objects.get(pk=action["execution_id"])
    assert Execution.objects.get(pk=finished["execution_id"]).state == ExecutionState.SUCCEEDED
    disk_ticket = Ticket.objects.get(ticket_id=healed["ticket_id"])
    dns_ticket = Ticket.objects.get(ticket_id=waiting["ticket_id"])
    pending = ApprovalRequest.objects.get(ticket=dns_ticket, status=ApprovalStatus.PENDING)
    assert pending.requested_by is None

    pause = Pause.objects.create(
        scope="category",
        category="cpu",
        reason="change freeze",
        created_by=users["supervisor"],
        ends_at=now + timedelta(days=1),
    )
    feedback = Feedback.objects.create(
        ticket=disk_ticket,
        submitted_by=users["supervisor"],
        feedback_type=FeedbackType.POSITIVE,
        rating=4,
        comment="the cleanup worked",
    )
    if not Pattern.objects.exists():
        Pattern.objects.create(signature="matrix", category="disk", key_terms=["disk_usage"])
    # a proposal one step up for the policy people approve (governance.promotions.proposals)
    AutonomyProposal.objects.create(
        policy=pending.decision.policy, change="raise_level", from_level=1, to_level=2,
        summary="matrix: earned L2",
    )  # fmt: skip
    Schedule.objects.create(name="matrix", func="remediation.tasks.release_held_executions")
    for success in (True, False):
        Task.objects.create(
            id=f"{int(success)}" * 32,
            name=f"matrix-{success}",
            func="math.floor",
            started=now,
            stopped=now,
            success=success,
        )
    OrmQ.objects.create(key="default", payload="matrix", lock=None)
    AutomationTarget.objects.create(
        name="matrix-awx", kind="awx", url="http://127.0.0.1:9/api/v2/job_templates/1/launch/",
        secret_env="WARDEN_TARGET_MATRIX_SECRET",
    )  # fmt: skip
    Alert.objects.create(
        source="alertmanager", fingerprint="0123456789abcdef", ticket=dns_ticket,
        name="BlackboxSlowDNS", status="firing", first_received_at=now, last_received_at=now,
    )  # fmt: skip
    issue_api_token(
        users["supervisor"], actor=None, expiry_days=30, reason="matrix", now=timezone.now()
    )
    # The outbox: a delivery sent to the approver, and a notice link they used.
    NoticeDelivery.objects.create(
        kind=NoticeKind.APPROVAL_REQUESTED, status=DeliveryStatus.SENT,
        emailed=[users["approver"].email], attempts=1, finished_at=now,
    )  # fmt: skip
    NoticeLinkUse.objects.create(
        nonce="0" * 32, user=users["approver"], approval_request=pending, verdict="approve",
        outcome="refused: the matrix's own",
    )  # fmt: skip

    preferred: dict[type[models.Model], models.Model] = {
        Host: host,
        Ticket: dns_ticket,
        ApprovalRequest: pending,
        Execution: execution,
        Pause: pause,
        Feedback: feedback,
        ModelVersion: serving,
        TriageModelVersion: serving_triage,
        User: users["approver"],
        Group: Group.objects.get(name="compliance"),
        type(execution.runbook): execution.runbook,
        type(pending.decision): pending.decision,
    }
    if pending.decision.policy is not None:
        preferred[type(pending.decision.policy)] = pending.decision.policy
    subjects = {}
    for model, _ in _registry():
        subject = preferred.get(model) or model._default_manager.order_by("pk").first()
        if subject is not None and history_model(model) is not None:
            subject.refresh_from_db()
            subject._history_user = root
            if not subject.history.exists():
                subject.save()  # seeded by a migration: a first version
            edit_once(subject)
        subjects[model] = subject
    world = World(
        root=root,
        users=users,
        host=host,
        key=key,
        execution=execution,
        token=action["token"],
        subjects=subjects,
        tables=fingerprinted_tables(),
        tokens=tokens,
    )
    world.log_in_everyone()
    world.as_built = fingerprint(world.tables)
    world.as_built_digests = digests(world.tables)
    return world


@pytest.fixture(scope="class")
def world(
    django_db_setup: Any,
    django_db_blocker: Any,
    trained_model: Any,
    trained_triage_model: Any,
    tmp_path_factory: Any,
):
    """Built once and kept in a transaction of its own; each case's transaction (the `db`
    fixture's) is a savepoint inside it, rolled back after the case."""
    with ExitStack() as stack:
        stack.enter_context(django_db_blocker.unblock())
        stack.enter_context(
            override_settings(
                MODEL_DIR=tmp_path_factory.mktemp("models"), WARDEN_MODEL_REFRESH_SECONDS=0
            )
        )
        sync, Conf.SYNC = Conf.SYNC, True
        stack.callback(setattr, Conf, "SYNC", sync)
        stack.callback(forget_serving_model)
        stack.callback(forget_serving_triage_model)
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield build_world(trained_model, trained_triage_model)
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


# --- Requests ----------------------------------------------------------------------------


def field_data(form: forms.BaseForm) -> dict[str, Any]:
    """What a browser posts for `form` unchanged (a checkbox left unticked is not posted)."""
    data: dict[str, Any] = {}
    for name, form_field in form.fields.items():
        if form_field.disabled:
            continue
        bound = form[name]
        value = bound.value()
        widget = form_field.widget
        if isinstance(widget, forms.MultiWidget):
            parts = value if isinstance(value, list | tuple) else widget.decompress(value)
            for suffix, part in zip(widget.widgets_names, parts, strict=False):
                data[bound.html_name + suffix] = "" if part is None else str(part)
        elif isinstance(form_field, forms.NullBooleanField):
            data[bound.html_name] = {True: "true", False: "false"}.get(value, "unknown")
        elif isinstance(form_field, forms.BooleanField):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(form_field, forms.MultipleChoiceField):
            data[bound.html_name] = [str(item) for item in value or []]
        else:
            data[bound.html_name] = "" if value is None else value
    return data


def plain_text(form_field: forms.Field) -> bool:
    return (
        isinstance(form_field, forms.CharField)
        and not isinstance(form_field, forms.JSONField)
        and not isinstance(form_field.widget, forms.HiddenInput | forms.PasswordInput)
        and not form_field.disabled
    )


def changed(value: Any, max_length: int | None) -> str:
    text = "" if value is None else str(value)
    if max_length and len(text) >= max_length:  # full: change its last letter instead
        return text[:-1] + ("y" if text.endswith("x") else "x")
    return text + "x"


def changed_form_data(form: forms.BaseForm, add: bool = False) -> dict[str, Any]:
    """The form's data with one field really changed (the first plain text, else a
    checkbox), and any reason for the change given. If that data is not valid for a model
    form, also ticking or unticking one checkbox: the first variant that is valid wins."""
    data = field_data(form)
    reasons = [name for name in form.fields if "reason" in name]
    for name in reasons:
        data[form[name].html_name] = NOTE
    texts = [n for n, f in form.fields.items() if n not in reasons and plain_text(f)]
    boxes = [
        form[name].html_name
        for name, f in form.fields.items()
        if isinstance(f, forms.BooleanField) and not isinstance(f, forms.NullBooleanField)
    ]
    variants = []
    if texts:
        first = form[texts[0]]
        data[first.html_name] = changed(data.get(first.html_name), first.field.max_length)
        variants.append(data)
    for box in boxes:
        variant = dict(data)
        if box in variant:
            del variant[box]
        else:
            variant[box] = "on"
        variants.append(variant)
    if not variants:
        return data
    if isinstance(form, forms.ModelForm):
        instance = None if add else form.instance
        for variant in variants:
            if type(form)(data=variant, instance=instance).is_valid():
                return variant
    return variants[0]


def page_data(world: World, endpoint: Endpoint, path: str) -> dict[str, Any]:
    """Valid form data for an admin page, read from the page as a superuser sees it."""
    page = world.superuser().get(path)
    context = page.context if page.status_code == 200 else None
    if context is None:
        return {}
    if endpoint.kind == "changelist":
        formset = context["cl"].formset
        if formset is None:
            return {}
        data = field_data(formset.management_form) | {"_save": "Save"}
        for number, form in enumerate(formset.forms):
            data |= changed_form_data(form) if number == 0 else field_data(form)
        return data
    if "adminform" not in context:
        return {}
    form = context["adminform"].form
    subject = world.subjects.get(endpoint.model)
    if endpoint.kind == "add" and isinstance(form, forms.ModelForm) and subject is not None:
        form = type(form)(instance=subject)  # a new row like the world's, one field apart
    data = changed_form_data(form, add=endpoint.kind == "add")
    for inline in context.get("inline_admin_formsets", []):
        data |= field_data(inline.formset.management_form)
        for inline_form in inline.formset.forms:
            data |= field_data(inline_form)
    return data


def admin_request(world: World, endpoint: Endpoint, method: str) -> tuple[str, dict]:
    model = endpoint.model
    if endpoint.kind == "site":
        return reverse(endpoint.url_name, kwargs=site_kwargs(world, endpoint)), {}
    rows = list(model._default_manager.order_by("pk").values_list("pk", flat=True)[:50])
    if endpoint.kind == "action":
        return reverse(endpoint.url_name), {
            "action": endpoint.action,
            admin.helpers.ACTION_CHECKBOX_NAME: [str(pk) for pk in rows],
            "confirmed": "yes",  # config/admin_actions.confirmed_action's second step
            "note": NOTE,
            "post": "yes",  # delete_selected's confirmation
        }
    subject = world.subjects[model]
    assert subject is not None, f"the world has no {model._meta.label} for {endpoint.id}"
    ids = [subject.pk]
    if endpoint.positional > 1:
        oldest = subject.history.order_by("history_date", "history_id").first()
        ids.append(oldest.history_id)
    path = reverse(endpoint.url_name, args=ids[: endpoint.positional])
    if method == "GET":
        return path, {}
    if endpoint.kind == "delete":
        return path, {"post": "yes"}
    return path, page_data(world, endpoint, path)


def site_kwargs(world: World, endpoint: Endpoint) -> dict[str, Any]:
    values = {
        "app_label": "governance",
        "content_type_id": ContentType.objects.get_for_model(Host).pk,
        "object_id": world.host.pk,
    }
    return {name: values[name] for name, _ in endpoint.converters}


# The model a view's <pk> names when neither its queryset nor its path tells
# (approvals/<pk>/approve takes an approval request, not an approval).
PK_MODELS = {"ApprovalVerdictView": ApprovalRequest}


def pk_subject(world: World, endpoint: Endpoint) -> models.Model | None:
    """The world's row for a <pk>: by the view's queryset, PK_MODELS, or the path segment
    before it naming a registered model ("executions/<pk>/cancel": an execution)."""
    view = endpoint.view
    queryset = getattr(view, "queryset", None)
    model = queryset.model if queryset is not None else PK_MODELS.get(view.__name__)
    if model is None:
        segment = endpoint.path_format.split("%(pk)s")[0].rstrip("/").rsplit("/", 1)[-1]
        names = {m._meta.model_name: m for m in world.subjects}
        model = names.get(segment.removesuffix("s")) or names.get(segment)
    return world.subjects.get(model) if model is not None else None


def api_path(world: World, endpoint: Endpoint) -> str:
    names = PLACEHOLDER.findall(endpoint.path_format)
    values: dict[str, Any] = {}
    for name in names:
        if name == "execution_id":
            values[name] = world.execution.pk
        elif name == "ticket_id":
            values[name] = world.subjects[Ticket].ticket_id
        elif name == "pk" and pk_subject(world, endpoint) is not None:
            values[name] = pk_subject(world, endpoint).pk
        elif name == "uidb64":  # a set-password link (manage.py add_person), the approver's
            values[name] = urlsafe_base64_encode(force_bytes(world.users["approver"].pk))
        elif name == "token" and "uidb64" in names:
            values[name] = default_token_generator.make_token(world.users["approver"])
        elif name == "token":  # a notice's approve link, sent to the approver
            approver = world.users["approver"].pk
            values[name] = sign_link(world.subjects[ApprovalRequest].pk, "approve", approver)
        elif name != "format":
            pytest.fail(f"{endpoint.id}: no value from the world for <{name}>: add one")
    if "format" not in names:
        return fill(endpoint, values)
    for suffix in ("json", ".json"):  # DRF's format suffix, as its converter or regex wants it
        path = fill(endpoint, {**values, "format": suffix})
        try:
            match = resolve(path)
        except Resolver404:
            continue
        if match.url_name == endpoint.url_name and "format" in match.kwargs:
            return path
    pytest.fail(f"{endpoint.id}: no format suffix leads to its view")


def fill(endpoint: Endpoint, values: dict[str, Any]) -> str:
    converters = dict(endpoint.converters)
    return "/" + endpoint.path_format % {
        name: converters[name].to_url(value) if name in converters else str(value)
        for name, value in values.items()
    }


def api_body(world: World, endpoint: Endpoint) -> dict[str, Any]:
    """A plausible body: what the endpoint's real caller sends. A person's verb says why
    under whichever name the endpoint reads (the others are ignored)."""
    if endpoint.url_name == "metrics":
        return {"host": world.host.name, "taken_at": timezone.now().isoformat(), **HEALTHY}
    if endpoint.url_name == "agent-result":
        return {"token": world.token, "ok": True, "output": NOTE}
    if endpoint.url_name == "ticket-list":  # another system opens a ticket
        return {
            "ticket_id": "MATRIX-1",
            "host": world.host.name,
            "category": "network",
            "description": NOTE,
            "enable_auto_remediation": True,
        }
    if endpoint.url_name == "feedback":
        ticket_id = world.subjects[Ticket].ticket_id
        return {"ticket_id": ticket_id, "feedback_type": "positive", "rating": 5, "comment": NOTE}
    if endpoint.url_name == "ticket-approve-remediation":
        return {"approve": True, "comment": NOTE}
    return {"comment": NOTE, "note": NOTE, "reason": NOTE}


def request_for(world: World, case: Case) -> tuple[str, Any]:
    key = (case.endpoint.id, case.method)
    if key not in world.requests:
        if case.endpoint.kind == "api":
            body = api_body(world, case.endpoint) if case.method == "POST" else None
            world.requests[key] = (api_path(world, case.endpoint), body)
        else:
            world.requests[key] = admin_request(world, case.endpoint, case.method)
    path, data = world.requests[key]
    if case.endpoint.url_name == "metrics" and data:
        data = {**data, "taken_at": timezone.now().isoformat()}  # newer than the last one
    return path, data


def send(browser: Client, case: Case, path: str, data: Any) -> Any:
    if case.method == "GET":
        return browser.get(path)
    if case.endpoint.kind == "api":
        return browser.post(path, data=json.dumps(data), content_type="application/json")
    return browser.post(path, data)


# --- The matrix ----------------------------------------------------------------------------


@pytest.mark.django_db
class TestPermissionMatrix:
    @pytest.mark.parametrize("case", HTTP_CASES, ids=[case.id for case in HTTP_CASES])
    def test_url(self, world, case):
        """Refused with nothing changed, or allowed and audited."""
        browser = world.client(case.role)
        prepared = (case.endpoint.id, case.method) in world.requests
        path, data = request_for(world, case)
        # A case starts from the world as built; only preparing a request the first time
        # (a superuser reading the page's form) runs queries of its own before it is sent.
        as_built = world.as_built, world.as_built_digests
        before = world.as_built if prepared else fingerprint(world.tables, *as_built)
        last = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True)
        last_sequence = last.first() or 0

        response = send(browser, case, path, data)

        changed = differences(before, fingerprint(world.tables, *as_built))
        events = list(AuditEvent.objects.filter(sequence__gt=last_sequence))
        named = {(event.object_type, event.object_id) for event in events}
        problems = []
        if changed and not events:
            problems.append("changed without an audit event")
        elif changed and not any(c.names() & named for c in changed):
            audited = ", ".join(f"{e.action} {e.object_type}#{e.object_id}" for e in events)
            problems.append(f"audited ({audited}) but no event names a changed row")
        if changed and (
            case.role in READ_ONLY_ROLES or (case.role == "agent" and case.endpoint.kind != "api")
        ):
            problems.append(f"{case.role} may change nothing here")
        verbs = ROLE_EVENTS.get(case.role)
        if changed and verbs and any(not e.action.startswith(verbs) for e in events):
            audited = ", ".join(e.action for e in events)
            problems.append(f"{case.role} changes only by {'/'.join(verbs)} ({audited})")
        OUTCOMES[
            "wrong" if problems else "allowed and audited" if changed else "nothing changed"
        ] += 1
        assert not problems, (
            f"{case.method} {path} as {case.role} -> HTTP {response.status_code}: "
            f"{'; '.join(problems)}: {'; '.join(str(c) for c in changed)}"
        )

    def test_the_world_has_a_row_with_history_of_every_registered_model(self, world):
        for model, _ in _registry():
            subject = world.subjects[model]
            assert subject is not None, f"the world has no {model._meta.label}"
            if history_model(model) is None:
                continue
            versions = list(subject.history.order_by("history_date", "history_id"))
            assert len(versions) >= 2, f"{model._meta.label}: nothing to revert to"
            delta = versions[-1].diff_against(versions[0])
            assert delta.changes, f"{model._meta.label}: its oldest version is the current one"

    def test_the_matrix_has_every_action_a_superuser_is_offered(self, world, rf):
        request = rf.get("/admin/")
        request.user = world.root
        collected = {(e.model, e.action) for e in ADMIN_ENDPOINTS if e.kind == "action"}
        for model, model_admin in _registry():
            for name in model_admin.get_actions(request):
                assert (model, name) in collected, f"{model._meta.label}: action {name}"


# --- The console's websocket -----------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(
    ("route", "role"), WEBSOCKET_CASES, ids=[f"ws:/{r}[{role}]" for r, role in WEBSOCKET_CASES]
)
def test_websocket(route, role):
    """Accepted only for a role that may read the audit log."""
    assert "%(" not in route, f"/{route}: no value from the world for its parameters"
    headers = [(b"origin", b"http://localhost")]
    user = None
    if role == "agent":
        _host, key = add_host("web-01", now=timezone.now())
        headers.append((b"authorization", f"Bearer {key}".encode()))
    elif role in SERVICE_ROLES:
        # a service's token, sent as its API calls send it: it opens no session
        user = service_user(role, SERVICE_ROLES[role])
        _, key = issue_api_token(user, actor=None, expiry_days=1, reason="ws", now=timezone.now())
        headers.append((b"authorization", f"Token {key}".encode()))
    elif role != "anonymous":
        user = (
            make_user(role, GROUPS[role])
            if role in GROUPS
            else User.objects.create_user(role, is_staff=True)
        )
        browser = Client()
        browser.force_login(user)
        session = browser.cookies[settings.SESSION_COOKIE_NAME]
        headers.append((b"cookie", f"{session.key}={session.value}".encode()))

    async def connect() -> bool:
        communicator = WebsocketCommunicator(application, f"/{route}", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        if connected:
            await communicator.disconnect()
        return connected

    connected = asyncio.run(connect())

    # The console's socket is a person's session: a service's token opens none.
    may_read = user is not None and role not in SERVICE_ROLES and user.has_perm(VIEW_AUDIT_LOG)
    OUTCOMES["websocket " + ("right" if connected == may_read else "wrong")] += 1
    assert connected == may_read, (
        f"/{route} as {role}: {'accepted' if connected else 'refused'}, but {role} "
        f"{'may' if may_read else 'may not'} read the audit log"
    )


def test_the_matrix_size(capsys):
    """Needs no database, so pytest-django runs it last: it reports what the run checked."""
    pages = [e for e in ADMIN_ENDPOINTS if e.kind not in ("action", "site")]
    actions = [e for e in ADMIN_ENDPOINTS if e.kind == "action"]
    site = [e for e in ADMIN_ENDPOINTS if e.kind == "site"]
    urls = len(ADMIN_ENDPOINTS) + len(API_ENDPOINTS) + len(WEBSOCKET_ROUTES)
    lines = [
        f"permission matrix: {urls} URLs x {len(ROLES)} roles "
        f"({len(pages)} admin model pages, {len(actions)} admin actions, {len(site)} admin "
        f"site pages, {len(API_ENDPOINTS)} other URLs, {len(WEBSOCKET_ROUTES)} websockets)",
        f"  {len(HTTP_CASES)} HTTP cases (URL x method x role), "
        f"{len(WEBSOCKET_CASES)} websocket cases",
    ]
    if OUTCOMES:
        lines.append("  checked this run: " + ", ".join(f"{n} {k}" for k, n in OUTCOMES.items()))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert len(HTTP_CASES) == len(ROLES) * sum(
        len(e.methods) for e in ADMIN_ENDPOINTS + API_ENDPOINTS
    ) - len(SERVICE_ROLES) * sum(len(e.methods) for e in ADMIN_ENDPOINTS)
    assert {e.model for e in pages} == {model for model, _ in _registry()}
