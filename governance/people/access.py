"""Who may do what: changes to people's access (groups, permissions, staff, active) audited.

Roles are groups (supervisors, approvers, compliance), so a membership change is a
change of who may approve or pause: it is recorded like any policy edit.
"""

from typing import Any

from django.contrib.auth.models import Group

from governance.audit.changes import require_reason
from governance.audit.log import append_events, event, user_actor


def access_of(person: Any) -> dict[str, Any]:
    """What a user may do, as stored: for comparing before and after an edit."""
    if person is None or person.pk is None:
        return {}
    return {
        "is_active": person.is_active,
        "is_staff": person.is_staff,
        "is_superuser": person.is_superuser,
        "groups": sorted(person.groups.values_list("name", flat=True)),
        "permissions": sorted(
            f"{app}.{codename}"
            for app, codename in person.user_permissions.values_list(
                "content_type__app_label", "codename"
            )
        ),
    }


def record_access_change(person: Any, before: dict[str, Any], *, by: Any, reason: str) -> None:
    """Audit the difference between `before` and `person`'s access now (caller's transaction)."""
    after = access_of(person)
    changed = sorted(key for key in after if before.get(key) != after[key])
    if not changed and before:
        return
    why = require_reason(reason)
    action = "user.access_changed" if before else "user.created"
    append_events(
        [
            event(
                user_actor(by),
                action,
                person,
                f"access of {person.get_username()} "
                f"{'changed: ' + ', '.join(changed) if before else 'granted'}: {why}",
                data={"before": before, "after": after, "reason": why},
            )
        ]
    )


def permissions_of(group: Group) -> list[str]:
    return sorted(
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    )


def record_group_change(group: Group, before: list[str] | None, *, by: Any, reason: str) -> None:
    """Audit a role's permissions changing (or a new role)."""
    after = permissions_of(group)
    if before is not None and before == after:
        return
    why = require_reason(reason)
    append_events(
        [
            event(
                user_actor(by),
                "group.created" if before is None else "group.permissions_changed",
                group,
                f"role {group.name} "
                f"{'created' if before is None else 'permissions changed'}: {why}",
                data={"before": before, "after": after, "reason": why},
            )
        ]
    )
