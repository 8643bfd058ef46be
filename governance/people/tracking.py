"""Every change to people is audited, however it is made.

Warden's own paths (the admin's user and role pages, service users issued by a command)
record an access change themselves, with the reason asked for, inside
`recorded_by_caller()`. Anything else that changes a user or a role (Django's
`createsuperuser` and `changepassword`, the admin's password pages, a script or the shell)
is caught here by the model signals and recorded in the same transaction as far as Django
allows (a save outside a transaction commits before its signal runs), attributed to the
person signed in when it happens in a request (simple_history's middleware keeps it) and
to "system" otherwise, naming where it came from. The password is recorded as a fact
("password" changed), never its hash. A bulk `QuerySet.update()` sends no signal: the
audit's state check is what names those.
"""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save
from simple_history.models import HistoricalRecords

from governance.audit.log import append_events, event, user_actor
from governance.people.access import (
    PERSON_COLUMNS,
    access_of,
    changed_fields,
    columns_of,
    permissions_of,
    public_access,
)

_recorded_by_caller: ContextVar[bool] = ContextVar("recorded_by_caller", default=False)
# Where a pre-signal leaves the state it read, for its post-signal.
SAVED_BEFORE = "_warden_saved_before"
LINKS_BEFORE = "_warden_links_before"


@contextmanager
def recorded_by_caller() -> Iterator[None]:
    """The caller records the access changes it makes itself, with its reason: the
    signals stay quiet so each change is recorded once."""
    token = _recorded_by_caller.set(True)
    try:
        yield
    finally:
        _recorded_by_caller.reset(token)


def connect() -> None:
    """Listen to every change of users and roles (the governance app's ready())."""
    User = get_user_model()
    uid = "warden-people-"
    pre_save.connect(_user_before, sender=User, dispatch_uid=uid + "user-before")
    post_save.connect(_user_after, sender=User, dispatch_uid=uid + "user-after")
    pre_delete.connect(_user_deleted, sender=User, dispatch_uid=uid + "user-deleted")
    pre_save.connect(_group_before, sender=Group, dispatch_uid=uid + "group-before")
    post_save.connect(_group_after, sender=Group, dispatch_uid=uid + "group-after")
    pre_delete.connect(_group_deleted, sender=Group, dispatch_uid=uid + "group-deleted")
    for through in (User.groups.through, User.user_permissions.through):
        m2m_changed.connect(_people_links, sender=through, dispatch_uid=uid + through.__name__)
    m2m_changed.connect(
        _group_permissions, sender=Group.permissions.through, dispatch_uid=uid + "group-perms"
    )


def _quiet(raw: bool = False) -> bool:
    return raw or _recorded_by_caller.get()


def _origin() -> tuple[str, str]:
    """Who made the change and where: the person signed in to the request, or the system
    with the command that runs."""
    request = getattr(HistoricalRecords.context, "request", None)
    if request is not None:
        person = getattr(request, "user", None)
        actor = user_actor(person) if getattr(person, "is_authenticated", False) else "system"
        return actor, f"{request.method} {request.path}"
    argv = sys.argv
    if len(argv) > 1 and argv[0].endswith(("manage.py", "django-admin")):
        return "system", f"manage.py {argv[1]}"
    return "system", "outside Warden's pages and actions (a script or the shell)"


def _record(action: str, obj: Any, what: str, data: dict[str, Any]) -> None:
    actor, where = _origin()
    with transaction.atomic():
        append_events(
            [event(actor, action, obj, f"{what} ({where})", data={**data, "reason": where})]
        )


# --- Users -----------------------------------------------------------------------------


def _user_before(sender: Any, instance: Any, raw: bool, update_fields: Any, **kwargs: Any) -> None:
    if _quiet(raw) or (update_fields is not None and not PERSON_COLUMNS & set(update_fields)):
        return  # a login stamping last_login changes nothing governed
    stored = sender.objects.filter(pk=instance.pk).first() if instance.pk is not None else None
    setattr(instance, SAVED_BEFORE, columns_of(stored) if stored is not None else {})


def _user_after(sender: Any, instance: Any, created: bool, raw: bool, **kwargs: Any) -> None:
    before = instance.__dict__.pop(SAVED_BEFORE, None)
    if before is None or _quiet(raw):
        return
    name = instance.get_username()
    if not before:
        after = access_of(instance)
        _record(
            "user.created",
            instance,
            f"{name} added",
            {"before": {}, "after": public_access(after), "changed": list(after)},
        )
        return
    after = columns_of(instance)
    changed = changed_fields(before, after)
    if changed:
        _record(
            "user.access_changed",
            instance,
            f"access of {name} changed: {', '.join(changed)}",
            {"before": public_access(before), "after": public_access(after), "changed": changed},
        )


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    if _quiet():
        return
    before = access_of(instance)
    _record(
        "user.deleted",
        instance,
        f"{instance.get_username()} deleted",
        {"before": public_access(before), "after": {}, "changed": list(before)},
    )


def _people_links(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """A user's roles or own permissions, changed from either side (user.groups.add(...),
    group.user_set.remove(...))."""
    if _quiet():
        return
    User = get_user_model()

    def affected() -> list[Any]:
        if not reverse:
            return [instance]
        if pk_set is not None:
            return list(User.objects.filter(pk__in=pk_set))
        # clearing a role's or a permission's people
        link = "groups" if sender is User.groups.through else "user_permissions"
        return list(User.objects.filter(**{link: instance}))

    for person, before, after in _link_changes(sender, instance, action, affected, access_of):
        changed = changed_fields(before, after)
        if changed:
            _record(
                "user.access_changed",
                person,
                f"access of {person.get_username()} changed: {', '.join(changed)}",
                {
                    "before": public_access(before),
                    "after": public_access(after),
                    "changed": changed,
                },
            )


def _link_changes(
    sender: Any,
    instance: Any,
    action: str,
    affected: Callable[[], list[Any]],
    state_of: Callable[[Any], Any],
) -> list[tuple[Any, Any, Any]]:
    """m2m_changed's bookkeeping, from either side of the link: before the change, the state
    of each row it affects (kept on `instance`); after it, each of those rows whose state
    changed, with its state before and after."""
    if action.startswith("pre_"):
        befores = instance.__dict__.setdefault(LINKS_BEFORE, {})
        for row in affected():
            befores[(sender, row.pk)] = (row, state_of(row))
        return []
    befores = instance.__dict__.get(LINKS_BEFORE, {})
    changes = []
    for key in [key for key in befores if key[0] is sender]:
        row, before = befores.pop(key)
        after = state_of(row)
        if after != before:
            changes.append((row, before, after))
    return changes


# --- Roles -----------------------------------------------------------------------------


def _group_before(sender: Any, instance: Group, raw: bool, **kwargs: Any) -> None:
    if _quiet(raw):
        return
    stored = Group.objects.filter(pk=instance.pk).values_list("name", flat=True).first()
    setattr(instance, SAVED_BEFORE, stored or "")


def _group_after(sender: Any, instance: Group, created: bool, raw: bool, **kwargs: Any) -> None:
    before = instance.__dict__.pop(SAVED_BEFORE, None)
    if before is None or _quiet(raw):
        return
    if not before:
        _record(
            "group.created",
            instance,
            f"role {instance.name} created",
            {"before": None, "after": permissions_of(instance), "name": instance.name},
        )
    elif before != instance.name:
        _record(
            "group.renamed",
            instance,
            f"role {before} renamed {instance.name}",
            {"name": {"from": before, "to": instance.name}},
        )


def _group_deleted(sender: Any, instance: Group, **kwargs: Any) -> None:
    if _quiet():
        return
    _record(
        "group.deleted",
        instance,
        f"role {instance.name} deleted",
        {
            "before": permissions_of(instance),
            "after": None,
            "members": sorted(instance.user_set.values_list("username", flat=True)),
        },
    )


def _group_permissions(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    if _quiet():
        return

    def affected() -> list[Group]:
        if not reverse:
            return [instance]
        if pk_set is not None:
            return list(Group.objects.filter(pk__in=pk_set))
        return list(Group.objects.filter(permissions=instance))

    for group, before, after in _link_changes(sender, instance, action, affected, permissions_of):
        _record(
            "group.permissions_changed",
            group,
            f"role {group.name} permissions changed",
            {"before": before, "after": after},
        )
