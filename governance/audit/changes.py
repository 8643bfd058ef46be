"""The one way a governed row changes: permission, validation, a reason, a version and an
audit event, in one transaction.

Every person's action that saves a policy, runbook, host, ticket, feedback or pattern level
ends in `record_change` (the action adds what the verb means, such as a runbook edit voiding
the approvals that were given for the old text); the admin's forms, its history revert
page, the API and the commands all call those actions, never `save()`. The actions check
who may act with `require_permission` and why with `require_reason`, both here.
"""

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction

from governance.audit.log import PendingEvent, append_events, event, user_actor

REASON_FIELD = "change_reason"


@dataclass(frozen=True)
class Change:
    """What one save did: the history version it wrote and the fields it changed."""

    action: str
    version: int
    changed: tuple[str, ...]
    created: bool

    @property
    def is_edit(self) -> bool:
        return bool(self.changed) and not self.created


def require_permission(actor: Any, permission: str, what: str) -> None:
    """Refuse unless `actor` holds `permission`. None is a local command: shell access to
    the server is already the database's own access, so it is audited as "system"."""
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(permission)):
        raise PermissionDenied(f"{actor.get_username()} may not {what}")


def require_reason(reason: str | None, refusal: Exception | None = None) -> str:
    """A change without a reason is refused: the audit trail must say why, not only what.

    Returns the reason, trimmed. An action whose refusal has its own code (a rejection's
    "note_required") passes it as `refusal`; the check is the same."""
    text = (reason or "").strip()
    if not text:
        raise refusal or ValidationError(
            {REASON_FIELD: "Say why: the reason goes into the audit trail."}
        )
    return text[:500]


def model_permission(obj: models.Model, verb: str) -> str:
    return f"{obj._meta.app_label}.{verb}_{obj._meta.model_name}"


def _plain(value: Any) -> Any:
    return (
        value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else str(value)
    )


def record_change(
    obj: models.Model,
    *,
    actor: Any,
    reason: str | None,
    summary_name: str | None = None,
    action: str | None = None,
    headline: str | None = None,
    data: dict[str, Any] | None = None,
    ticket_id: str = "",
    events: list[PendingEvent] | None = None,
) -> Change:
    """Validate and save `obj` as a new history version, audited with who (`actor`, a User,
    or None for the system), what and why.

    An action that does more (voiding approvals, cancelling executions) calls this
    inside its own transaction, so all of it commits or none does. One that names the
    change itself (a policy promoted) gives its `action`, `headline` (the summary before
    the version and reason), extra `data` and the `ticket_id` it happened on; with
    `events`, the event joins the caller's list, written with the others in their order.
    """
    created = obj._state.adding or obj.pk is None
    name = obj._meta.model_name
    verb = "add" if created else "change"
    require_permission(actor, model_permission(obj, verb), f"{verb} {obj._meta.verbose_name}s")
    why = require_reason(reason)
    obj.full_clean()
    obj._history_user = actor  # history names the person outside a request too
    obj._change_reason = why
    with transaction.atomic():
        obj.save()
        version = obj.history.latest()  # the record this save wrote
        previous = None if created else version.prev_record
        changes = [] if previous is None else version.diff_against(previous).changes
        changed = tuple(sorted(change.field for change in changes))
        label = summary_name or str(obj)
        if created:
            verb, summary = f"{name}.created", f"{name} {label} created"
        else:
            verb = f"{name}.changed"
            summary = f"{name} {label} changed: {', '.join(changed) or 'saved unchanged'}"
        action = action or verb
        summary = headline or summary
        data = {
            **(data or {}),
            "version": version.history_id,
            "changed": list(changed),
            "reason": why,
            "values": {
                change.field: {"from": _plain(change.old), "to": _plain(change.new)}
                for change in changes
            },
        }
        ticket_id = obj.ticket_id if name == "ticket" else ticket_id
        pending = event(
            user_actor(actor),
            action,
            obj,
            f"{summary} (version {version.history_id}): {why}",
            ticket_id=ticket_id,
            data=data,
        )
        if events is None:
            append_events([pending])
        else:
            events.append(pending)
    return Change(action, version.history_id, changed, created)
