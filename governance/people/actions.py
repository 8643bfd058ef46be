"""People's actions on access: who may do what, and the API tokens that act as them.

Each is `(thing, *, actor, reason, now, **options)`: it checks `actor`'s permission (None:
a local command, audited as "system") and the reason, and writes its events in one
transaction. None of them dates a row, so `now` is taken for the one shape and not used.

Roles are groups (supervisors, approvers, compliance), so a membership change is a change
of who may approve or pause: the admin saves a user or a role, then records what changed
(record_access_change, record_group_change) in the same transaction, like any policy edit.

A token belongs to one user, so to that user's roles: it may do what the user may do and
nothing more (an integrator's service user in the integrators role opens tickets and gives
feedback; an approver's token approves). django-rest-knox stores only a hash of the token
and its expiry; the token is shown once, when issued. Revoking deletes that hash (nothing
refers to it) and the audit event keeps the record of it. Agents' host keys are a
different thing (remediation/api/authentication.py): neither works as the other.
"""

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from knox.models import AuthToken

from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.errors import Invalid
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.people.access import access_of, changed_fields, permissions_of, public_access
from governance.people.tracking import recorded_by_caller

MAX_EXPIRY_DAYS = 3650
# The roles a service (not a person) is given a user in (never an approver).
SERVICE_ROLES = permissions.SERVICE_ROLES


class TokenError(Invalid):
    """A token (or a service's user) that cannot be made as asked."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


# --- Access ----------------------------------------------------------------------------


def record_access_change(
    person: Any, *, actor: Any, reason: str, now: datetime, before: dict[str, Any]
) -> None:
    """Audit the difference between `before` (access_of the stored user; {} for a new one)
    and `person`'s access now, in the caller's transaction. Nothing changed: nothing to
    record, and no reason asked for. A new password is recorded as the fact, not the hash."""
    after = access_of(person)
    changed = changed_fields(before, after) if before else list(after)
    if not changed:
        return
    require_permission(
        actor, "auth.change_user" if before else permissions.ADD_PERSON, "change people's access"
    )
    why = require_reason(reason)
    action = "user.access_changed" if before else "user.created"
    append_events(
        [
            event(
                user_actor(actor),
                action,
                person,
                f"access of {person.get_username()} "
                f"{'changed: ' + ', '.join(changed) if before else 'granted'}: {why}",
                data={
                    "before": public_access(before),
                    "after": public_access(after),
                    "changed": changed,
                    "reason": why,
                },
            )
        ]
    )


def record_group_change(
    group: Group,
    *,
    actor: Any,
    reason: str,
    now: datetime,
    before: list[str] | None,
    renamed_from: str = "",
) -> None:
    """Audit a role's permissions changing from `before` (None: a new role), and its name
    from `renamed_from` (people are matched to roles by name), in the caller's transaction."""
    after = permissions_of(group)
    renamed = bool(renamed_from) and renamed_from != group.name
    if before is not None and before == after and not renamed:
        return
    require_permission(
        actor, "auth.add_group" if before is None else "auth.change_group", "change roles"
    )
    why = require_reason(reason)
    if before is None:
        action, what = "group.created", "created"
    elif before == after:  # only the name changed
        action, what = "group.renamed", f"renamed from {renamed_from}"
    else:
        action, what = "group.permissions_changed", "permissions changed"
    append_events(
        [
            event(
                user_actor(actor),
                action,
                group,
                f"role {group.name} {what}: {why}",
                data={
                    "before": before,
                    "after": after,
                    "reason": why,
                    **({"name": {"from": renamed_from, "to": group.name}} if renamed else {}),
                },
            )
        ]
    )


def add_service_user(username: str, *, actor: Any, reason: str, now: datetime, role: str) -> Any:
    """The user a service acts as: created in `role` (one of SERVICE_ROLES) if it does not
    exist, with no password (only tokens sign it in), audited; an existing user is returned
    as it is, and must already be in the role."""
    if role not in SERVICE_ROLES:
        raise TokenError(f"a service's role is one of: {', '.join(SERVICE_ROLES)} (not {role!r})")
    User = get_user_model()
    existing = User.objects.filter(username=username).first()
    if existing is not None:
        if not existing.groups.filter(name=role).exists():
            raise TokenError(f"{username} exists and is not in the {role} role")
        return existing
    require_permission(actor, permissions.ADD_PERSON, "add users")
    with transaction.atomic(), recorded_by_caller():
        person = User(username=username)
        person.set_unusable_password()
        person.full_clean(exclude=["password"])
        person.save()
        person.groups.add(Group.objects.get(name=role))
        record_access_change(person, actor=actor, reason=reason, now=now, before={})
    return person


# --- API tokens ------------------------------------------------------------------------


def issue_api_token(
    person: Any, *, actor: Any, reason: str, now: datetime, expiry_days: int | None
) -> tuple[AuthToken, str]:
    """Issue `person` a token valid for `expiry_days` days (None: until revoked).

    Returns the stored token and the token itself, which is not stored anywhere. `actor`
    needs knox.add_authtoken.
    """
    require_permission(actor, permissions.ISSUE_TOKEN, "issue API tokens")
    why = require_reason(reason)
    if not person.is_active:
        raise TokenError(f"{person.get_username()} is not active: an inactive user has no tokens")
    if expiry_days is not None and not 1 <= expiry_days <= MAX_EXPIRY_DAYS:
        raise TokenError(f"a token lasts 1 to {MAX_EXPIRY_DAYS} days, or until revoked")
    with transaction.atomic():
        token, key = AuthToken.objects.create(
            person, expiry=timedelta(days=expiry_days) if expiry_days else None
        )
        lasts = f"until {token.expiry:%Y-%m-%d %H:%M} UTC" if token.expiry else "until revoked"
        append_events(
            [
                event(
                    user_actor(actor),
                    "token.issued",
                    person,
                    f"API token {token.token_key}… issued to {person.get_username()}, "
                    f"valid {lasts}: {why}",
                    data={
                        "token_key": token.token_key,
                        "expiry": token.expiry,
                        "roles": sorted(person.groups.values_list("name", flat=True)),
                        "reason": why,
                    },
                )
            ]
        )
    return token, key


def revoke_api_token(token: AuthToken, *, actor: Any, reason: str, now: datetime) -> None:
    """Revoke one token: it stops working at once."""
    require_permission(actor, permissions.REVOKE_TOKEN, "revoke API tokens")
    why = require_reason(reason)
    with transaction.atomic():
        person = token.user
        deleted, _ = AuthToken.objects.filter(digest=token.digest).delete()
        if deleted:
            append_events([_revoked(person, [token.token_key], actor, why)])


def revoke_api_tokens(person: Any, *, actor: Any, reason: str, now: datetime) -> int:
    """Revoke every token of `person`; returns how many there were."""
    require_permission(actor, permissions.REVOKE_TOKEN, "revoke API tokens")
    why = require_reason(reason)
    with transaction.atomic():
        tokens = AuthToken.objects.select_for_update().filter(user=person)
        keys = sorted(tokens.values_list("token_key", flat=True))
        if keys:
            tokens.delete()
            append_events([_revoked(person, keys, actor, why)])
    return len(keys)


def _revoked(person: Any, keys: list[str], actor: Any, why: str) -> PendingEvent:
    plural = "s" if len(keys) != 1 else ""
    return event(
        user_actor(actor),
        "token.revoked",
        person,
        f"{len(keys)} API token{plural} of {person.get_username()} revoked "
        f"({', '.join(key + '…' for key in keys)}): {why}",
        data={"token_keys": keys, "reason": why},
    )
