"""Hosts' agents and what they allow: an agent's reported allow-list, checked and kept.

Adding a host, rotating its key and editing it are people's actions (remediation.actions).
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.audit.log import append_events, event
from remediation.models import Host, Runbook, argv_problem
from warden_agent.argv import allowlist_digest
from warden_agent.executor import AllowListError, validate_allowlist

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
