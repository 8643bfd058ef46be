"""Adding a person: `manage.py add_person` makes someone who can sign in, in their role, with
the email their notices go to, audited as an access change naming who ran it."""

import re
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from governance.audit import permissions
from governance.models import AuditEvent
from governance.notices.recipients import people_with
from tests.governance.admin_pages import form_data, logged_in

pytestmark = pytest.mark.django_db


def add_person(*args: str) -> str:
    out = StringIO()
    call_command("add_person", *args, stdout=out)
    return out.getvalue()


def signs_in(username: str, password: str) -> bool:
    """The admin's own login page, as a browser posts it."""
    browser = Client()
    answer = browser.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"}
    )
    return answer.status_code == 302 and browser.get("/admin/").status_code == 200


def test_a_new_compliance_officer_signs_in_with_the_password_printed_once():
    out = add_person("erin", "--role", "compliance", "--email", "erin@example.com")

    password = re.search(r"Password \(shown once\): (\S+)", out).group(1)
    erin = User.objects.get(username="erin")
    assert erin.is_staff and not erin.is_superuser
    assert list(erin.groups.values_list("name", flat=True)) == ["compliance"]
    assert erin.email == "erin@example.com"
    assert signs_in("erin", password)
    # read only: compliance may read the audit trail, not approve
    assert erin.has_perm(permissions.VIEW_WHOLE_AUDIT)
    assert not erin.has_perm(permissions.APPROVE)


def test_an_approver_added_hears_of_requests():
    add_person("frank", "--role", "approver", "--email", "frank@example.com")

    assert "frank@example.com" in [user.email for user in people_with(permissions.APPROVE)]


def test_the_access_granted_is_audited_naming_who_ran_the_command(monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "ops-olga")

    add_person("gail", "--role", "supervisor", "--email", "gail@example.com")

    gail = User.objects.get(username="gail")
    [added] = AuditEvent.objects.filter(action="user.created", object_id=str(gail.pk))
    assert added.actor == "system"
    assert "manage.py add_person, run by ops-olga" in added.data["reason"]
    granted = added.data["after"]
    assert granted["groups"] == ["supervisors"]
    assert granted["is_staff"] is True and granted["is_superuser"] is False
    assert granted["email"] == "gail@example.com"
    assert granted["password"] == "set"  # the fact, never the hash
    assert gail.password not in str(added.data)
    # recorded once, by the use case, not again by the model signals
    assert AuditEvent.objects.filter(object_type="User", object_id=str(gail.pk)).count() == 1


def test_a_set_password_link_works_once():
    out = add_person(
        "hana", "--role", "approver", "--email", "hana@example.com", "--set-password-link"
    )

    assert "Password" not in out
    link = re.search(r"Set-password link \(works once\): (\S+)", out).group(1)
    assert not User.objects.get(username="hana").has_usable_password()
    path = link.split("://", 1)[1].split("/", 1)[1]
    browser = Client()
    form_page = browser.get("/" + path, follow=True)
    assert form_page.context["validlink"]
    new = {"new_password1": "a-long-Passphrase-42", "new_password2": "a-long-Passphrase-42"}
    done = browser.post(form_page.redirect_chain[-1][0], new, follow=True)
    assert done.status_code == 200 and b"Password reset complete" in done.content
    assert signs_in("hana", "a-long-Passphrase-42")

    again = Client().get("/" + path, follow=True)
    assert not again.context["validlink"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ivan", "--role", "admin", "--email", "i@example.com"], "the role is one of: supervisor"),
        (["ivan", "--role", "approver", "--email", "not-an-address"], "is not an email address"),
        (["  ", "--role", "approver", "--email", "i@example.com"], "a person needs a name"),
        (["iv an", "--role", "approver", "--email", "i@example.com"], "username: Enter a valid"),
    ],
)
def test_bad_input_is_one_readable_line_and_adds_nobody(args, message):
    with pytest.raises(CommandError, match=message) as refused:
        add_person(*args)

    assert "\n" not in str(refused.value)
    assert not User.objects.filter(email="i@example.com").exists()


def test_adding_someone_twice_is_refused_unless_asked_to_add_a_role():
    add_person("jo", "--role", "approver", "--email", "jo@example.com")

    with pytest.raises(CommandError, match=r"jo exists already .*--add-role"):
        add_person("jo", "--role", "compliance", "--email", "jo@example.com")
    out = add_person("jo", "--role", "compliance", "--email", "jo@example.com", "--add-role")

    jo = User.objects.get(username="jo")
    assert "is now also in the compliance role" in out and "Password" not in out
    assert sorted(jo.groups.values_list("name", flat=True)) == ["approvers", "compliance"]
    [changed] = AuditEvent.objects.filter(action="user.access_changed", object_id=str(jo.pk))
    assert changed.data["changed"] == ["groups"]


def test_an_email_someone_else_has_is_refused():
    add_person("kim", "--role", "approver", "--email", "kim@example.com")

    with pytest.raises(CommandError, match=re.escape("kim@example.com is kim's email already")):
        add_person("lee", "--role", "approver", "--email", "KIM@example.com")


def test_the_admin_says_when_someone_in_a_role_cannot_sign_in():
    root = User.objects.create_superuser("root", "root@example.com", "root-password-1")
    mo = User.objects.create_user("mo", "mo@example.com", "mo-password-1")
    browser = logged_in(root)
    url = reverse("admin:auth_user_change", args=[mo.pk])
    data = form_data(browser.get(url), change_reason="joins compliance")
    joined = data.pop("date_joined")
    data |= {"date_joined_0": f"{joined:%Y-%m-%d}", "date_joined_1": f"{joined:%H:%M:%S}"}
    data["groups"] = [str(Group.objects.get(name="compliance").pk)]

    answer = browser.post(url, {**data, "_save": "Save"}, follow=True)

    said = [str(m) for m in answer.context["messages"]]
    assert any("mo is in a role but cannot sign in" in m and "Staff status" in m for m in said)
    assert not signs_in("mo", "mo-password-1")  # as the issue found: staff is what lets in
