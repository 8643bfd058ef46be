"""What a person or a role may do, as stored: read before and after an admin edit, so the
difference is what governance.people.actions records."""

from typing import Any

from django.contrib.auth.models import Group


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


def permissions_of(group: Group) -> list[str]:
    return sorted(
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    )
