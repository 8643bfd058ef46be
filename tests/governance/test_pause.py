"""A pause holds automation before the next action starts, and resuming releases it."""

import pytest
from django.utils import timezone

from governance.models import PauseScope
from governance.switches import pause_automation, resume_automation
from remediation.models import Execution


@pytest.mark.parametrize(
    ("scope", "target"),
    [(PauseScope.ALL, {}), (PauseScope.CATEGORY, {"category": "disk"}), (PauseScope.HOST, "host")],
)
def test_a_pause_holds_queued_executions(agent, alice, scope, target):
    # given a pause over everything, the disk category, or this host
    extra = {"host": agent.host} if target == "host" else target
    pause_automation(scope=scope, reason="vendor incident", user=alice, now=timezone.now(), **extra)

    # when a safe problem arrives
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    # then nothing reaches the agent
    assert result["decision"] != "AUTO_HEAL" or Execution.objects.get().state == "held"
    assert agent.take_actions() == []


def test_a_pause_taken_after_dispatch_holds_before_the_agent_starts(agent, alice):
    # given an execution already dispatched to the agent
    agent.post_metrics(agent.sample("disk"))
    assert Execution.objects.get().state == "dispatched"

    # when automation is paused before the agent polls
    pause_automation(scope=PauseScope.ALL, reason="freeze", user=alice, now=timezone.now())

    # then the agent gets nothing and the execution waits
    assert agent.take_actions() == []
    assert Execution.objects.get().state == "held"


def test_resuming_releases_held_executions(agent, alice):
    # given an execution held by a pause
    agent.post_metrics(agent.sample("disk"))
    pause = pause_automation(
        scope=PauseScope.CATEGORY, reason="freeze", user=alice, now=timezone.now(), category="disk"
    )
    assert agent.take_actions() == []

    # when the pause is lifted
    with agent.capture(execute=True):
        resume_automation(pause, user=alice, now=timezone.now())

    # then the action reaches the agent
    [action] = agent.take_actions()
    assert action["action"] == "clean_temp_and_rotate_logs"


def test_other_categories_keep_healing_while_one_is_paused(agent, alice):
    pause_automation(
        scope=PauseScope.CATEGORY, reason="freeze", user=alice, now=timezone.now(), category="disk"
    )
    [result] = agent.post_metrics(agent.sample("cpu")).json()["results"]
    assert result["decision"] == "AUTO_HEAL"
    assert [a["action"] for a in agent.take_actions()] == ["throttle_runaway_process"]
