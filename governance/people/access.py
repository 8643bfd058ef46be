"""What a person or a role may do, as stored: read before and after an edit, so the
difference is what governance.people.actions records.

A person's record holds what governs them: the name and email approvers are matched by,
whether they may sign in (active, a usable password), staff and superuser, their roles
and their own permissions. The password's hash is read to tell that it changed and is
never written anywhere: `public_access` puts the fact in its place.
"""

from typing import Any

from django.contrib.auth.hashers import is_password_usable
from django.contrib.auth.models import Group

from governance.audit.state import permission_names

# The keys of a person's record, in the order a change is listed.
PERSON_FIELDS = (
    "username",
    "email",
    "password",
    "is_active",
    "is_staff",
    "is_superuser",
    "groups",
    "permissions",
)
# The columns of the user row behind them: a save that writes none of these (a login
# stamping last_login) changes nothing governed.
PERSON_COLUMNS = frozenset(
    {"username", "email", "password", "is_active", "is_staff", "is_superuser"}
)


def access_of(person: Any) -> dict[str, Any]:
    """What a user may do, as stored (the password as its hash: see public_access)."""
    if person is None or person.pk is None:
        return {}
    return {
        **columns_of(person),
        "groups": sorted(person.groups.values_list("name", flat=True)),
        "permissions": permission_names(person.user_permissions),
    }


def columns_of(person: Any) -> dict[str, Any]:
    """The user row's own governed columns, as `person` holds them (saved or not)."""
    return {
        "username": person.get_username(),
        "email": person.email,
        "password": person.password,
        "is_active": person.is_active,
        "is_staff": person.is_staff,
        "is_superuser": person.is_superuser,
    }


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The keys of `after` that differ from `before`, in PERSON_FIELDS order."""
    return [key for key in PERSON_FIELDS if key in after and before.get(key) != after[key]]


def public_access(access: dict[str, Any]) -> dict[str, Any]:
    """`access` as the audit trail keeps it: whether a usable password is set, not its hash."""
    if "password" not in access:
        return dict(access)
    usable = bool(access["password"]) and is_password_usable(access["password"])
    return {**access, "password": "set" if usable else "unusable"}


def permissions_of(group: Group) -> list[str]:
    return permission_names(group.permissions)
