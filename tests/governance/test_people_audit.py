"""Every change to people is audited, however it is made: the admin's user, role and
password pages, Django's own commands, and code that saves a user or a role directly.
Approvers are matched by username and email, so a change of either is a change of who may
approve; a password is recorded as a fact, never as its hash."""

import sys

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.urls import reverse

from governance.models import AuditEvent
from tests.governance.admin_pages import form_data, logged_in


def head() -> int:
    """The newest event's sequence: the fixtures' people were audited as they were made."""
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()


def events_about(person, action: str = "user.access_changed", after: int = 0) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            action=action,
            object_type=type(person).__name__,
            object_id=str(person.pk),
            sequence__gt=after,
        ).order_by("sequence")
    )


def no_hash_in(event: AuditEvent, person: User) -> bool:
    person.refresh_from_db()
    return person.password not in event.summary and person.password not in str(event.data)


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", "root-password-1")


def post_user_page(browser, person, **changes):
    url = reverse("admin:auth_user_change", args=[person.pk])
    data = form_data(browser.get(url), **changes)
    joined = data.pop("date_joined")  # a split date and time widget
    data |= {"date_joined_0": f"{joined:%Y-%m-%d}", "date_joined_1": f"{joined:%H:%M:%S}"}
    last_login = data.pop("last_login", None)
    if last_login:
        data |= {"last_login_0": f"{last_login:%Y-%m-%d}", "last_login_1": f"{last_login:%H:%M}"}
    return browser.post(url, {**data, "_save": "Save"})


def test_a_username_and_email_change_in_the_admin_is_audited_with_its_reason(root, bob):
    start = head()
    response = post_user_page(
        logged_in(root),
        bob,
        username="robert",
        email="robert@example.com",
        change_reason="married, new name",
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    [changed] = events_about(bob, after=start)
    assert changed.actor == "user:root"
    assert changed.data["changed"] == ["username", "email"]
    assert changed.data["before"]["username"] == "bob"
    assert changed.data["after"]["email"] == "robert@example.com"
    assert changed.data["reason"] == "married, new name"


def test_staff_superuser_active_and_own_permissions_in_the_admin_are_audited(root, bob):
    start = head()
    approve = Permission.objects.get(codename="approve_approvalrequest")
    response = post_user_page(
        logged_in(root),
        bob,
        is_staff=False,
        is_superuser=True,
        is_active=False,
        user_permissions=[approve.pk],
        change_reason="testing every switch",
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    [changed] = events_about(bob, after=start)
    assert changed.data["changed"] == ["is_active", "is_staff", "is_superuser", "permissions"]
    assert changed.data["after"]["permissions"] == ["governance.approve_approvalrequest"]


def test_the_admin_change_password_page_is_audited_as_a_fact_not_a_hash(root, bob):
    start = head()
    url = reverse("admin:auth_user_password_change", args=[bob.pk])
    response = logged_in(root).post(
        url,
        {"usable_password": "true", "password1": "N3w-secret-x9", "password2": "N3w-secret-x9"},
    )

    assert response.status_code == 302
    [changed] = events_about(bob, after=start)
    assert changed.actor == "user:root"
    assert changed.data["changed"] == ["password"]
    assert changed.data["after"]["password"] == "set"
    assert changed.data["reason"] == f"POST {url}"
    assert no_hash_in(changed, bob)


def test_a_person_changing_their_own_password_is_audited(db, bob):
    bob.set_password("old-secret-x9")
    bob.save()
    start = head()
    browser = logged_in(bob)

    response = browser.post(
        reverse("admin:password_change"),
        {
            "old_password": "old-secret-x9",
            "new_password1": "N3w-secret-x9",
            "new_password2": "N3w-secret-x9",
        },
    )

    assert response.status_code == 302
    changed = events_about(bob, after=start)
    assert [event.actor for event in changed] == ["user:bob"]
    assert changed[0].data["changed"] == ["password"]


def test_a_password_disabled_in_the_admin_is_audited(root, bob):
    bob.set_password("old-secret-x9")
    bob.save()
    start = head()

    response = logged_in(root).post(
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {"usable_password": "false", "unset-password": "Disable password-based authentication"},
    )

    assert response.status_code == 302, response.context["form"].errors

    [changed] = events_about(bob, after=start)
    assert changed.data["after"]["password"] == "unusable"


def test_manage_py_changepassword_is_audited(db, bob, monkeypatch):
    start = head()
    monkeypatch.setattr(sys, "argv", ["manage.py", "changepassword", "bob"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "N3w-secret-x9")

    call_command("changepassword", "bob", stdout=open("/dev/null", "w"))  # noqa: SIM115

    [changed] = events_about(bob, after=start)
    assert changed.actor == "system"
    assert changed.data["changed"] == ["password"]
    assert changed.data["reason"] == "manage.py changepassword"
    assert no_hash_in(changed, bob)


def test_manage_py_createsuperuser_is_audited(db, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["manage.py", "createsuperuser"])
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "N3w-secret-x9")

    call_command(
        "createsuperuser", interactive=False, username="ops", email="ops@example.com", verbosity=0
    )

    ops = User.objects.get(username="ops")
    [created] = events_about(ops, "user.created")
    assert created.actor == "system"
    assert created.data["after"]["is_superuser"] is True
    assert created.data["after"]["password"] == "set"
    assert created.data["reason"] == "manage.py createsuperuser"


def test_a_user_saved_by_code_is_audited_as_the_system(db, bob):
    start = head()
    bob.email = "someone-else@example.com"
    bob.is_active = False
    bob.save()

    [changed] = events_about(bob, after=start)
    assert changed.actor == "system"
    assert changed.data["changed"] == ["email", "is_active"]


def test_a_sign_in_is_not_an_access_change(db, bob):
    bob.set_password("old-secret-x9")
    bob.save()
    before = AuditEvent.objects.count()

    assert logged_in(bob).login(username="bob", password="old-secret-x9")

    assert AuditEvent.objects.count() == before


def test_membership_changed_from_the_role_side_is_audited(db, bob):
    start = head()
    supervisors = Group.objects.get(name="supervisors")

    supervisors.user_set.add(bob)
    Group.objects.get(name="approvers").user_set.clear()

    joined, left = events_about(bob, after=start)
    assert joined.data["after"]["groups"] == ["approvers", "supervisors"]
    assert left.data["after"]["groups"] == ["supervisors"]


def test_a_role_permission_changed_by_code_is_audited(db):
    compliance = Group.objects.get(name="compliance")
    approve = Permission.objects.get(codename="approve_approvalrequest")

    compliance.permissions.add(approve)

    [changed] = events_about(compliance, "group.permissions_changed")
    assert "governance.approve_approvalrequest" in changed.data["after"]
    assert "governance.approve_approvalrequest" not in changed.data["before"]


def test_a_role_renamed_in_the_admin_is_audited(root):
    approvers = Group.objects.get(name="approvers")
    url = reverse("admin:auth_group_change", args=[approvers.pk])
    browser = logged_in(root)

    response = browser.post(
        url,
        {
            **form_data(browser.get(url), name="deciders", change_reason="new org chart"),
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    [renamed] = events_about(approvers, "group.renamed")
    assert renamed.actor == "user:root"
    assert renamed.data["name"] == {"from": "approvers", "to": "deciders"}
    assert renamed.data["reason"] == "new org chart"
