"""Registering hosts and their agents' keys."""

from typing import Any

from django.db import transaction

from governance.audit import append_events, event, user_actor
from governance.changes import Change, require_permission, save_governed
from remediation.models import HOST_NAME, Host


class HostError(Exception):
    """A host that cannot be added as asked."""


def add_host(
    name: str, *, labels: dict[str, str] | None = None, user: Any = None
) -> tuple[Host, str]:
    """Register a host; returns it and its agent key, which is never stored and shown once."""
    if not HOST_NAME.match(name):
        raise HostError(f"{name!r} is not a valid host name (letters, digits, dots and dashes)")
    with transaction.atomic():
        if Host.objects.filter(name=name).exists():
            raise HostError(f"host {name} already exists (use --rotate-key for a new key)")
        host = Host(name=name, labels=labels or {})
        key = register_host(host, user=user)
    return host, key


def save_host(host: Host, *, user: Any, reason: str | None) -> Change:
    """Save a person's edit of a host (labels, enabled), as a new version, audited."""
    return save_governed(host, user=user, reason=reason)


def register_host(host: Host, *, user: Any = None, reason: str = "") -> str:
    """Give a new, validated host its agent key, save it and audit it; returns the key."""
    require_permission(user, "remediation.add_host", "add hosts")
    with transaction.atomic():
        key = host.set_new_api_key()
        host.save()
        append_events(
            [
                event(
                    user_actor(user),
                    "host.added",
                    host,
                    f"host {host.name} added" + (f": {reason}" if reason else ""),
                    data={"labels": host.labels, "reason": reason},
                )
            ]
        )
    return key


def rotate_host_key(name: str, *, user: Any = None) -> tuple[Host, str]:
    """Give a host a new key; the old one stops working at once."""
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(name=name).first()
        if host is None:
            raise HostError(f"no host named {name}")
        key = host.set_new_api_key()
        host.save()
        append_events(
            [event(user_actor(user), "host.key_rotated", host, f"agent key of {name} rotated")]
        )
    return host, key
