"""A pause holds automation before the next action starts, and resuming releases it."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest, AuditEvent, Decision, Pause, PauseScope
from governance.pauses.actions import pause_automation, resume_pause
from governance.pauses.state import is_active
from remediation import tasks
from remediation.models import Execution
from tests.governance.admin_pages import form_data, logged_in

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

CHANGELIST = "/admin/governance/pause/"


def pause_everything(user, **extra) -> Pause:
    return pause_automation(
        Pause(scope=PauseScope.ALL, **extra), actor=user, reason="freeze", now=timezone.now()
    )


@pytest.mark.parametrize(
    ("scope", "target", "named"),
    [
        (PauseScope.ALL, {}, "All automation"),
        (PauseScope.CATEGORY, {"category": "disk"}, "Category disk"),
        (PauseScope.HOST, "host", "Host web-01"),
    ],
)
def test_while_paused_a_safe_problem_waits_for_a_person_and_its_execution_is_held(
    agent, alice, bob, scope, target, named
):
    # given a pause over everything, the disk category, or this host
    extra = {"host": agent.host} if target == "host" else target
    pause = pause_automation(
        Pause(scope=scope, **extra), actor=alice, reason="vendor incident", now=timezone.now()
    )

    # when a problem arrives that would otherwise heal itself
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    # then the engine asks a person and names the pause among its reasons
    decision = Decision.objects.get(ticket__ticket_id=result["ticket_id"])
    assert result["decision"] == decision.outcome == "HITL_REQUIRED"
    assert decision.model_outcome == "AUTO_HEAL"
    assert f"{named} paused by alice: vendor incident." in decision.reasons
    assert not Execution.objects.exists()

    # and when a person approves, the execution is held, not handed to the agent
    request = ApprovalRequest.objects.get(ticket=decision.ticket)
    with agent.capture(execute=True):
        approve_request(request, actor=bob, reason="go", now=timezone.now())
    assert Execution.objects.get().state == "held"
    assert agent.take_actions() == []

    # and resuming releases it to the agent
    with agent.capture(execute=True):
        resume_pause(pause, actor=alice, now=timezone.now(), reason="vendor fixed it")
    [action] = agent.take_actions()
    assert action["action"] == "clean_temp_and_rotate_logs"


def test_a_pause_taken_after_dispatch_holds_before_the_agent_starts(agent, alice):
    # given an execution already dispatched to the agent
    agent.post_metrics(agent.sample("disk"))
    assert Execution.objects.get().state == "dispatched"

    # when automation is paused before the agent polls
    pause_everything(alice)

    # then the agent gets nothing and the execution waits
    assert agent.take_actions() == []
    assert Execution.objects.get().state == "held"


def test_resuming_releases_held_executions(agent, alice):
    # given an execution held by a pause
    agent.post_metrics(agent.sample("disk"))
    pause = pause_automation(
        Pause(scope=PauseScope.CATEGORY, category="disk"),
        actor=alice,
        reason="freeze",
        now=timezone.now(),
    )
    assert agent.take_actions() == []

    # when the pause is lifted
    with agent.capture(execute=True):
        resume_pause(pause, actor=alice, now=timezone.now(), reason="vendor fixed it")

    # then the action reaches the agent
    [action] = agent.take_actions()
    assert action["action"] == "clean_temp_and_rotate_logs"
    assert Execution.objects.get().state == "running"


def test_other_categories_keep_healing_while_one_is_paused(agent, alice):
    pause_automation(
        Pause(scope=PauseScope.CATEGORY, category="disk"),
        actor=alice,
        reason="freeze",
        now=timezone.now(),
    )
    [result] = agent.post_metrics(agent.sample("cpu")).json()["results"]
    assert result["decision"] == "AUTO_HEAL"
    assert [a["action"] for a in agent.take_actions()] == ["throttle_runaway_process"]


def test_a_pause_that_has_ended_no_longer_sends_problems_to_people(agent, alice):
    # given a pause taken an hour ago for half an hour
    started = timezone.now() - timedelta(hours=1)
    pause = pause_automation(
        Pause(scope=PauseScope.ALL, ends_at=started + timedelta(minutes=30)),
        actor=alice,
        reason="maintenance window",
        now=started,
    )

    # when a safe problem arrives now
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    # then it heals itself, and the lapsed pause is not among the reasons
    decision = Decision.objects.get(ticket__ticket_id=result["ticket_id"])
    assert decision.outcome == "AUTO_HEAL"
    assert not any("maintenance window" in line for line in decision.reasons)
    assert not is_active(pause, timezone.now())
    assert [a["action"] for a in agent.take_actions()] == ["clean_temp_and_rotate_logs"]


def test_the_sweeper_releases_executions_once_their_pause_lapses(agent, alice, monkeypatch):
    # given an execution held by a pause that ends in five minutes
    agent.post_metrics(agent.sample("disk"))
    ends_at = timezone.now() + timedelta(minutes=5)
    pause = pause_everything(alice, ends_at=ends_at)
    assert agent.take_actions() == []
    assert tasks.sweep()["released"] == 0  # still paused: the sweeper leaves it held

    # when the end time passes and the sweeper runs, without anybody resuming
    later = ends_at + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with agent.capture(execute=True):
        report = tasks.sweep()

    # then the execution is released to the agent, and the release is audited
    assert report["released"] == 1
    assert [a["action"] for a in agent.take_actions()] == ["clean_temp_and_rotate_logs"]
    assert AuditEvent.objects.filter(action="execution.released").count() == 1
    pause.refresh_from_db()
    assert pause.resumed_at is None  # it lapsed; nobody resumed it


def test_a_pause_cannot_end_before_it_starts(db, alice):
    now = timezone.now()
    with pytest.raises(ValidationError) as refused:
        pause_everything(alice, ends_at=now - timedelta(minutes=1))
    assert refused.value.message_dict == {"ends_at": ["The pause must end after it starts."]}
    assert not Pause.objects.exists()


def test_pausing_and_resuming_in_the_admin_is_audited_and_listed(alice):
    # given a supervisor in the admin
    browser = logged_in(alice)

    # when she pauses the disk category
    page = browser.get(f"{CHANGELIST}add/")
    response = browser.post(
        f"{CHANGELIST}add/",
        {**form_data(page, scope="category", category="disk", reason="disk vendor bug")},
    )
    assert response.status_code == 302

    # then the pause is audited in her name and listed as holding automation
    pause = Pause.objects.get()
    paused = AuditEvent.objects.get(action="automation.paused")
    assert (paused.actor, paused.object_id) == ("user:alice", str(pause.pk))
    assert paused.summary == "category disk paused by alice: disk vendor bug"
    listing = browser.get(f"{CHANGELIST}?state=active")
    assert b"category disk paused by alice: disk vendor bug" in listing.content
    assert b'alt="True"' in listing.content

    # when she resumes it from the list, confirming with a note
    response = browser.post(
        CHANGELIST,
        {
            "action": "resume_action",
            "_selected_action": [pause.pk],
            "note": "vendor fixed it",
            "confirmed": "yes",
        },
        follow=True,
    )

    # then the resume is audited in her name and the pause leaves the active list
    assert [str(m) for m in response.context["messages"]] == [
        "Resumed: category disk paused by alice: disk vendor bug"
    ]
    resumed = AuditEvent.objects.get(action="automation.resumed")
    assert (resumed.actor, resumed.object_id) == ("user:alice", str(pause.pk))
    assert resumed.data == {"note": "vendor fixed it"}
    pause.refresh_from_db()
    assert pause.resumed_by == alice
    assert b"disk vendor bug" not in browser.get(f"{CHANGELIST}?state=active").content
    ended = browser.get(f"{CHANGELIST}?state=ended")
    assert b"disk vendor bug" in ended.content
    assert b'alt="False"' in ended.content


def test_a_lapsed_pause_is_listed_as_ended(db, alice):
    # given a pause that ended ten minutes ago
    started = timezone.now() - timedelta(hours=1)
    pause_automation(
        Pause(scope=PauseScope.ALL, ends_at=timezone.now() - timedelta(minutes=10)),
        actor=alice,
        reason="night freeze",
        now=started,
    )
    browser = logged_in(alice)

    # when / then
    assert b"night freeze" not in browser.get(f"{CHANGELIST}?state=active").content
    assert b"night freeze" in browser.get(f"{CHANGELIST}?state=ended").content


@pytest.mark.parametrize(
    ("persona", "may_resume"), [("alice", True), ("bob", False), ("dave", False)]
)
def test_only_supervisors_resume_automation_in_the_admin(request, alice, persona, may_resume):
    # given a pause, and a supervisor, an approver or compliance in the admin
    pause = pause_everything(alice)
    browser = logged_in(request.getfixturevalue(persona))

    # when they try to resume it
    browser.post(
        CHANGELIST,
        {
            "action": "resume_action",
            "_selected_action": [pause.pk],
            "confirmed": "yes",
            "note": "vendor fixed it",
        },
    )

    # then
    pause.refresh_from_db()
    assert (pause.resumed_at is not None) is may_resume
    assert AuditEvent.objects.filter(action="automation.resumed").exists() is may_resume


@pytest.mark.parametrize(("persona", "status"), [("alice", 200), ("bob", 403), ("dave", 403)])
def test_only_supervisors_may_pause_in_the_admin(db, request, persona, status):
    browser = logged_in(request.getfixturevalue(persona))
    assert browser.get(f"{CHANGELIST}add/").status_code == status
