"""The task schedules decide what runs unattended and when: creating, changing or deleting
one in the admin is audited with who, why, and its before and after."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from governance.models import AuditEvent
from tests.governance.admin_pages import form_data, logged_in


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", "root-password-1")


@pytest.fixture
def sweeper(db):
    return Schedule.objects.create(
        name="sweeper-test",
        func="remediation.tasks.sweep",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        repeats=-1,
        next_run=timezone.now().replace(microsecond=0) + timedelta(minutes=1),
    )


def post_schedule(browser, url, **changes):
    data = form_data(browser.get(url), **changes)
    next_run = data.pop("next_run")
    data |= {"next_run_0": f"{next_run:%Y-%m-%d}", "next_run_1": f"{next_run:%H:%M:%S}"}
    return browser.post(url, {**data, "_save": "Save"})


def test_a_schedule_changed_in_the_admin_is_audited_with_before_and_after(root, sweeper):
    response = post_schedule(
        logged_in(root),
        reverse("admin:django_q_schedule_change", args=[sweeper.pk]),
        minutes=60,
        func="remediation.tasks.nothing",
        change_reason="slow the sweeper down",
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    event = AuditEvent.objects.get(action="schedule.changed", object_id=str(sweeper.pk))
    assert event.actor == "user:root"
    assert event.data["changed"] == ["func", "minutes"]
    assert event.data["before"]["minutes"] == 1 and event.data["after"]["minutes"] == 60
    assert event.data["after"]["func"] == "remediation.tasks.nothing"
    assert event.data["reason"] == "slow the sweeper down"


def test_a_schedule_change_without_a_reason_is_refused(root, sweeper):
    response = post_schedule(
        logged_in(root),
        reverse("admin:django_q_schedule_change", args=[sweeper.pk]),
        minutes=60,
    )

    assert response.status_code == 200
    assert "change_reason" in response.context["adminform"].form.errors
    sweeper.refresh_from_db()
    assert sweeper.minutes == 1


def test_a_schedule_created_in_the_admin_is_audited(root):
    browser = logged_in(root)
    url = reverse("admin:django_q_schedule_add")
    page = browser.get(url)
    data = form_data(
        page,
        name="nightly",
        func="remediation.tasks.sweep",
        schedule_type=Schedule.DAILY,
        repeats=-1,
        change_reason="a nightly sweep",
    )
    data.pop("next_run")
    data |= {"next_run_0": "2030-01-01", "next_run_1": "03:00:00"}

    response = browser.post(url, {**data, "_save": "Save"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = Schedule.objects.get(name="nightly")
    event = AuditEvent.objects.get(action="schedule.created", object_id=str(schedule.pk))
    assert event.data["after"]["schedule_type"] == Schedule.DAILY
    assert event.data["after"]["next_run"].startswith("2030-01-01T03:00:00")


def test_a_schedule_deleted_in_the_admin_is_audited(root, sweeper):
    url = reverse("admin:django_q_schedule_delete", args=[sweeper.pk])

    response = logged_in(root).post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Schedule.objects.filter(pk=sweeper.pk).exists()
    event = AuditEvent.objects.get(action="schedule.deleted", object_id=str(sweeper.pk))
    assert event.actor == "user:root"
    assert event.data["before"]["func"] == "remediation.tasks.sweep"


def test_schedules_deleted_in_bulk_are_audited_each(root, sweeper):
    other = Schedule.objects.create(name="other-test", func="remediation.tasks.sweep")

    logged_in(root).post(
        reverse("admin:django_q_schedule_changelist"),
        {"action": "delete_selected", "_selected_action": [sweeper.pk, other.pk], "post": "yes"},
    )

    deleted = AuditEvent.objects.filter(action="schedule.deleted")
    assert sorted(deleted.values_list("object_id", flat=True)) == sorted(
        [str(sweeper.pk), str(other.pk)]
    )
