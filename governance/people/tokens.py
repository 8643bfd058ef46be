"""API tokens for people and services: issued and revoked, each audited.

A token belongs to one user, so to that user's roles: it may do what the user may do
and nothing more (an integrator's service user in the integrators role opens tickets and
gives feedback; an approver's token approves). django-rest-knox stores only a hash of
the token and its expiry; the token is shown once, when issued. Revoking deletes that
hash (nothing refers to it) and the audit event keeps the record of it. Agents' host
keys are a different thing (remediation/api/authentication.py): neither works as the other.
"""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from knox.models import AuthToken

from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.log import append_events, event, user_actor
from governance.people.access import record_access_change

MAX_EXPIRY_DAYS = 3650


# The roles a service (not a person) is given a user in: it signs in with nothing but a token.
SERVICE_ROLES = ("integrators", "alert senders")


class TokenError(Exception):
    """A token that cannot be issued as asked."""


def service_user(username: str, role: str, *, by: Any, reason: str) -> Any:
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
    require_permission(by, "auth.add_user", "add users")
    with transaction.atomic():
        person = User(username=username)
        person.set_unusable_password()
        person.full_clean(exclude=["password"])
        person.save()
        person.groups.add(Group.objects.get(name=role))
        record_access_change(person, {}, by=by, reason=reason)
    return person


def issue_api_token(
    person: Any, *, by: Any, expiry_days: int | None, reason: str
) -> tuple[AuthToken, str]:
    """Issue `person` a token valid for `expiry_days` days (None: until revoked).

    Returns the stored token and the token itself, which is not stored anywhere. `by`
    needs knox.add_authtoken (None: a local command).
    """
    require_permission(by, permissions.ISSUE_TOKEN, "issue API tokens")
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
                    user_actor(by),
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


def revoke_api_token(token: AuthToken, *, by: Any, reason: str) -> None:
    """Revoke one token: it stops working at once."""
    require_permission(by, permissions.REVOKE_TOKEN, "revoke API tokens")
    why = require_reason(reason)
    with transaction.atomic():
        person = token.user
        deleted, _ = AuthToken.objects.filter(digest=token.digest).delete()
        if deleted:
            append_events([_revoked(person, [token.token_key], by, why)])


def revoke_api_tokens(person: Any, *, by: Any, reason: str) -> int:
    """Revoke every token of `person`; returns how many there were."""
    require_permission(by, permissions.REVOKE_TOKEN, "revoke API tokens")
    why = require_reason(reason)
    with transaction.atomic():
        tokens = AuthToken.objects.select_for_update().filter(user=person)
        keys = sorted(tokens.values_list("token_key", flat=True))
        if keys:
            tokens.delete()
            append_events([_revoked(person, keys, by, why)])
    return len(keys)


def _revoked(person: Any, keys: list[str], by: Any, why: str) -> Any:
    plural = "s" if len(keys) != 1 else ""
    return event(
        user_actor(by),
        "token.revoked",
        person,
        f"{len(keys)} API token{plural} of {person.get_username()} revoked "
        f"({', '.join(key + '…' for key in keys)}): {why}",
        data={"token_keys": keys, "reason": why},
    )
