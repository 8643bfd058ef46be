"""The state of governed rows as the audit log last recorded it, and what differs now.

Every event about a governed row (its object) carries a digest of that row's governed
fields as the change left them, computed when the event is appended, in the change's own
transaction; the chain's HMAC covers it. `verify_audit --state` reads every governed row
again and compares it with the digest of its newest event: a row edited, inserted or
deleted in the database without Warden is named.

Which fields are governed is chosen per model: what decides what Warden may do, who may
do it, and what was done. Fields the system writes without an event (lease times,
timestamps of progress, counters) are left out, so the proof does not cry wolf.
"""

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.models import Model
from django.utils.dateparse import parse_datetime

from governance.audit.canonical import canonical_json

# The digest an event carries when its object no longer exists (deleted by the change).
NEVER_AUDITED = "never audited"
DELETED = "deleted"


def permission_names(permissions: Any) -> list[str]:
    """A user's or a role's permissions (its related manager), as sorted "app.codename"."""
    rows = permissions.values_list("content_type__app_label", "codename")
    return sorted(f"{app}.{codename}" for app, codename in rows)


def _permissions(manager: str) -> Callable[[Model], list[str]]:
    def read(obj: Model) -> list[str]:
        return permission_names(getattr(obj, manager))

    return read


def _groups(user: Model) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def _verdicts(request: Model) -> list[list[str]]:
    rows = request.approvals.values_list("approver_id", "verdict")
    return sorted([str(approver), verdict] for approver, verdict in rows)


@dataclass(frozen=True)
class Governed:
    """A governed model: its fields (attnames) and sets of related rows that are its state."""

    label: str
    fields: tuple[str, ...]
    sets: dict[str, Callable[[Model], Any]] = field(default_factory=dict)
    name_field: str = ""

    @property
    def model(self) -> type[Model]:
        return apps.get_model(self.label)

    @property
    def object_type(self) -> str:
        """What the log calls its rows (governance.audit.log.event: the class name)."""
        return self.model.__name__


GOVERNED = (
    Governed(
        "governance.Policy",
        (
            "name",
            "category",
            "description",
            "enabled",
            "mode",
            "autonomy_level",
            "min_confidence_score",
            "min_reliability_score",
            "min_similar_tickets",
            "min_positive_feedback_rate",
            "min_auto_confidence_escalation",
            "allowed_action_types",
            "allowed_systems",
            "forbidden_commands",
            "allowed_hours_start",
            "allowed_hours_end",
            "allowed_days",
            "timezone",
            "requires_approval",
            "auto_approve_threshold",
            "approvers",
            "required_approvals",
            "critical_required_approvals",
            "max_actions_per_hour",
            "requires_rollback_plan",
            "requires_backup",
            "blast_radius_max_hosts",
            "blast_radius_max_percent",
            "blast_radius_label",
            "customer_impact_sla_minutes",
        ),
        name_field="name",
    ),
    Governed(
        "remediation.Runbook",
        (
            "name",
            "title",
            "category",
            "action",
            "rollback_action",
            "action_type",
            "system",
            "reversible",
            "argv",
            "rollback_argv",
            "touches",
            "blast_radius",
            "enabled",
            "handoff_target_id",
        ),
        name_field="name",
    ),
    Governed(
        "governance.ApprovalRequest",
        (
            "ticket_id",
            "decision_id",
            "runbook_id",
            "runbook_version",
            "argv_digest",
            "status",
            "required_approvals",
            "requested_by_id",
        ),
        {"verdicts": _verdicts},
    ),
    Governed(
        "remediation.Execution",
        (
            "ticket_id",
            "host_id",
            "runbook_id",
            "decision_id",
            "approval_request_id",
            "idempotency_key",
            "runbook_version",
            "action",
            "rollback_action",
            "argv",
            "rollback_argv",
            "argv_digest",
            "state",
            "requested_by_id",
            "handoff_target_id",
        ),
    ),
    Governed(
        "governance.Pause",
        (
            "scope",
            "category",
            "host_id",
            "reason",
            "created_by_id",
            "ends_at",
            "resumed_at",
            "resumed_by_id",
        ),
    ),
    Governed(
        settings.AUTH_USER_MODEL,
        ("username", "email", "password", "is_active", "is_staff", "is_superuser"),
        {"groups": _groups, "permissions": _permissions("user_permissions")},
        name_field="username",
    ),
    Governed("auth.Group", ("name",), {"permissions": _permissions("permissions")}, "name"),
)


def governed_by_object_type() -> dict[str, Governed]:
    return {governed.object_type: governed for governed in GOVERNED}


def row_state(governed: Governed, obj: Model) -> dict[str, Any]:
    state = {name: getattr(obj, name) for name in governed.fields}
    state.update({name: read(obj) for name, read in governed.sets.items()})
    return state


def state_digest(governed: Governed, obj: Model | None) -> str:
    """The digest of `obj`'s governed state (DELETED for a row that is gone)."""
    if obj is None:
        return DELETED
    text = canonical_json({"model": governed.label, "pk": str(obj.pk), **row_state(governed, obj)})
    return hashlib.sha256(text.encode()).hexdigest()


def current_digest(object_type: str, object_id: str) -> str:
    """The digest of the row an event is about, as the database holds it now; "" when the
    object is not a governed row."""
    governed = governed_by_object_type().get(object_type)
    if governed is None:
        return ""
    obj = governed.model._default_manager.filter(pk=object_id).first()
    return state_digest(governed, obj)


# --- verifying ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StateDifference:
    label: str
    object_id: str
    name: str
    problem: str
    event_sequence: int | None = None

    @property
    def line(self) -> str:
        named = f" '{self.name}'" if self.name else ""
        event = f" (event {self.event_sequence})" if self.event_sequence is not None else ""
        return f"{self.label} {self.object_id}{named}: {self.problem}{event}"


def state_differences(events: Any) -> Iterator[StateDifference]:
    """Every governed row that differs from its last audited state, or was never audited,
    and every audited row that is gone. `events`: the AuditEvent queryset (chain verified)."""
    for governed in GOVERNED:
        last: dict[str, tuple[str, int]] = {}
        newest = (
            events.filter(object_type=governed.object_type)
            .exclude(object_state="")
            .order_by("sequence")
            .values_list("object_id", "object_state", "sequence")
        )
        for object_id, digest, sequence in newest.iterator(chunk_size=2000):
            last[object_id] = (digest, sequence)
        seen = set()
        for obj in governed.model._default_manager.order_by("pk").iterator(chunk_size=500):
            object_id = str(obj.pk)
            seen.add(object_id)
            name = str(getattr(obj, governed.name_field)) if governed.name_field else ""
            audited = last.get(object_id)
            if audited is None:
                yield StateDifference(governed.label, object_id, name, NEVER_AUDITED)
            elif audited[0] == DELETED:
                yield StateDifference(
                    governed.label, object_id, name, "present, but deleted in the log", audited[1]
                )
            elif audited[0] != state_digest(governed, obj):
                yield StateDifference(
                    governed.label,
                    object_id,
                    name,
                    "changed since its last audited state",
                    audited[1],
                )
        for object_id, (digest, sequence) in last.items():
            if object_id not in seen and digest != DELETED:
                yield StateDifference(
                    governed.label, object_id, "", "deleted since its last audited state", sequence
                )


def token_differences(events: Any, tokens: Iterable[Any]) -> Iterator[StateDifference]:
    """API tokens: each one present must have been issued through Warden (an event naming
    its key, its person and its expiry) and not revoked since."""
    issued: dict[str, tuple[str, str | None, int]] = {}
    revoked: dict[str, int] = {}
    for action, object_id, data, sequence in (
        events.filter(action__in=("token.issued", "token.revoked"))
        .order_by("sequence")
        .values_list("action", "object_id", "data", "sequence")
        .iterator(chunk_size=2000)
    ):
        if action == "token.issued":
            issued[data.get("token_key", "")] = (object_id, data.get("expiry"), sequence)
            revoked.pop(data.get("token_key", ""), None)
        else:
            for key in data.get("token_keys", []):
                revoked[key] = sequence
    for token in tokens:
        key, label = token.token_key, "knox.AuthToken"
        person = token.user.get_username()
        if key in revoked:
            yield StateDifference(label, key, person, "present, but revoked", revoked[key])
        elif key not in issued:
            yield StateDifference(label, key, person, "never issued through Warden")
        else:
            object_id, expiry, sequence = issued[key]
            if object_id != str(token.user_id) or not _same_time(expiry, token.expiry):
                yield StateDifference(
                    label, key, person, "person or expiry changed since it was issued", sequence
                )


def _same_time(recorded: str | None, expiry: datetime | None) -> bool:
    """The event holds the expiry as DjangoJSONEncoder wrote it (milliseconds)."""
    if recorded is None or expiry is None:
        return recorded is None and expiry is None
    parsed = parse_datetime(recorded)
    return parsed is not None and abs((parsed - expiry).total_seconds()) < 0.001
