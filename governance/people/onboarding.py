"""Adding a person to a role: one use case for `manage.py add_person` and the demo.

A person signs in to the admin and the console, and Django's admin lets in staff only: a
person put in a role without staff status cannot sign in at all. So a person added here is
always staff, in the role's group, with the email their notices go to (an approver with no
email never hears of a request). They get either a password, shown once by the caller, or
no usable password and a set-password link: Django's password-reset token, which stops
working once the password is set (it is bound to the password's hash).

The access granted is recorded like any other access change (record_access_change): who
ran it, the role, staff status and the email, with the reason.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from governance.audit import permissions
from governance.audit.changes import require_permission
from governance.audit.errors import Invalid
from governance.people.access import access_of
from governance.people.actions import record_access_change
from governance.people.tracking import recorded_by_caller

# A person's role, as typed, and the group that holds its permissions (migration 0003).
ROLES = {"supervisor": "supervisors", "approver": "approvers", "compliance": "compliance"}
# What each role may do, for the command's help and docs/operators.md.
ROLE_DUTIES = {
    "supervisor": "everything in the admin and the console: pause, stop, roll back, approve",
    "approver": "read everything, approve or reject what waits for people",
    "compliance": "read everything, export and check the audit trail",
}
PASSWORD_BYTES = 18  # secrets.token_urlsafe: 24 characters


class PersonError(Invalid):
    """A person who cannot be added as asked (one readable line)."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


@dataclass(frozen=True)
class AddedPerson:
    person: Any
    role: str
    created: bool  # False: an existing person given another role
    password: str = ""  # shown once; "" when a set-password link was asked for


def add_person(
    name: str,
    *,
    role: str,
    email: str,
    actor: Any,
    reason: str,
    now: datetime,
    set_password_link: bool = False,
    add_role: bool = False,
) -> AddedPerson:
    """Create `name` as staff in `role` (a key of ROLES) with `email`, audited.

    An existing `name` is refused unless `add_role`: then it is given `role` (and staff
    status) besides the roles it has. `actor` None is a local command ("system" in the
    audit trail; the reason says who ran it)."""
    name = (name or "").strip()
    if not name:
        raise PersonError("a person needs a name (their username)")
    group_name = ROLES.get(role)
    if group_name is None:
        raise PersonError(f"the role is one of: {', '.join(ROLES)} (not {role!r})")
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise PersonError(f"{email!r} is not an email address: notices go there") from exc
    require_permission(actor, permissions.ADD_PERSON, "add people")
    User = get_user_model()
    with transaction.atomic(), recorded_by_caller():
        group = Group.objects.filter(name=group_name).first()
        if group is None:
            raise PersonError(f"the {group_name} role is missing: run manage.py migrate")
        existing = User.objects.select_for_update().filter(username=name).first()
        if existing is not None and not add_role:
            raise PersonError(f"{name} exists already (to give them another role, add --add-role)")
        # Approvers are matched by email too: one address, one person.
        other = User.objects.filter(email__iexact=email).exclude(username=name).first()
        if other is not None:
            raise PersonError(f"{other.email} is {other.get_username()}'s email already")
        if existing is not None:
            return _give_role(existing, group, role, email, actor=actor, reason=reason, now=now)
        person = User(username=name, email=email, is_staff=True)
        password = "" if set_password_link else secrets.token_urlsafe(PASSWORD_BYTES)
        if password:
            person.set_password(password)
        else:
            person.set_unusable_password()
        try:
            person.full_clean(exclude=["password"])
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise PersonError(f"{field}: {messages[0]}") from exc
        person.save()
        person.groups.add(group)
        record_access_change(person, actor=actor, reason=reason, now=now, before={})
    return AddedPerson(person, role, created=True, password=password)


def _give_role(
    person: Any, group: Group, role: str, email: str, *, actor: Any, reason: str, now: datetime
) -> AddedPerson:
    """Another role for an existing person (and staff status, which every role needs)."""
    before = access_of(person)
    if person.email != email and person.email:
        raise PersonError(
            f"{person.get_username()}'s email is {person.email}, not {email}: "
            "change it in the admin, with a reason"
        )
    person.email, person.is_staff = email, True
    person.save(update_fields=["email", "is_staff"])
    person.groups.add(group)
    record_access_change(person, actor=actor, reason=reason, now=now, before=before)
    return AddedPerson(person, role, created=False)


def set_password_link(person: Any) -> str:
    """An absolute link where `person` sets their password: it works until the password
    changes (so once) or PASSWORD_RESET_TIMEOUT passes."""
    path = reverse(
        "set-password",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(person.pk)),
            "token": default_token_generator.make_token(person),
        },
    )
    return f"{settings.WARDEN_NOTICE_BASE_URL}{path}"


def staff_missing(person: Any) -> bool:
    """Whether `person` is in a person's role but cannot sign in for want of staff status
    (the admin's login refuses anyone not staff)."""
    if person is None or person.pk is None or person.is_staff or not person.is_active:
        return False
    return person.groups.filter(name__in=ROLES.values()).exists()
