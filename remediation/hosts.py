"""Registering hosts and their agents' keys."""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.audit.changes import Change, require_permission, save_governed
from governance.audit.log import append_events, event, user_actor
from remediation.models import HOST_NAME, Host, Runbook, argv_problem
from warden_agent.argv import allowlist_digest
from warden_agent.executor import AllowListError, validate_allowlist


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


MAX_ALLOWLIST_ENTRIES = 500
ACTION_LENGTH = Runbook._meta.get_field("action").max_length


def allowlist_problems(entries: Any, digest: str) -> dict[str, list[str]]:
    """What is wrong with an allow-list an agent reports, by field ({} if nothing): each
    entry an action name mapping to a command template, and the digest its own."""
    if not isinstance(entries, dict):
        return {"entries": ["An object mapping each action name to its command, a list."]}
    if len(entries) > MAX_ALLOWLIST_ENTRIES:
        return {"entries": [f"At most {MAX_ALLOWLIST_ENTRIES} actions."]}
    problems: dict[str, list[str]] = {}
    for name, template in entries.items():
        problem = entry_problem(name, template)
        if problem:
            problems[f"entries.{name}"] = [problem]
    if not problems and digest != allowlist_digest(entries):
        problems["digest"] = ["Not the digest of these entries: the report was altered or cut."]
    return problems


def entry_problem(name: str, template: Any) -> str:
    """Why one reported entry cannot be held, or "": the agent's own rule for its allow-list
    (warden_agent.executor.validate_allowlist), then what a runbook's action name and
    command may be (so no entry is held that no runbook could match)."""
    try:
        validate_allowlist({name: template}, "entry")
    except AllowListError as exc:
        return str(exc)
    if len(name) > ACTION_LENGTH:
        return f"An action name has at most {ACTION_LENGTH} characters."
    return argv_problem(template)


def record_allowlist(
    host: Host, entries: dict[str, list[str]], *, agent_version: str, now: datetime
) -> Host:
    """Keep what `host`'s agent says it allows (validated by allowlist_problems), audited
    when it differs from what it said before: which actions came, went or changed."""
    digest = allowlist_digest(entries)
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        before = host.allowlist if host.allowlist_digest else {}
        changed = digest != host.allowlist_digest
        host.allowlist = entries
        host.allowlist_digest = digest
        host.allowlist_reported_at = now
        host.agent_version = agent_version[:50]
        host.save(
            update_fields=[
                "allowlist",
                "allowlist_digest",
                "allowlist_reported_at",
                "agent_version",
            ]
        )
        if changed:
            added = sorted(set(entries) - set(before))
            removed = sorted(set(before) - set(entries))
            altered = sorted(n for n in set(entries) & set(before) if entries[n] != before[n])
            parts = [
                f"{label} {', '.join(names)}"
                for label, names in (("added", added), ("removed", removed), ("changed", altered))
                if names
            ]
            append_events(
                [
                    event(
                        f"agent:{host.name}",
                        "host.allowlist_reported",
                        host,
                        f"{host.name}'s agent allows {len(entries)} actions"
                        + (f": {'; '.join(parts)}" if parts else ""),
                        data={
                            "digest": digest,
                            "agent_version": host.agent_version,
                            "added": added,
                            "removed": removed,
                            "changed": altered,
                        },
                    )
                ]
            )
    return host
