"""An action counts as started only when its agent says it started.

The agent takes a claim on its poll, says it is starting (POST .../started) and runs it
only once Warden answers. A claim it never says it started (it went away, the answer to
its poll was lost, it restarted) is offered again with the same token, so an agent that
did start it knows it and never runs a second copy; after WARDEN_AGENT_OFFERS offers it is
cancelled. Nothing ran: it is never verified against readings, never rolled back, never
counted against its automation. Every interleaving of claim, start, report and sweep.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Pattern
from governance.models import AuditEvent, Pause, PauseScope, Policy
from governance.pauses.actions import pause_automation
from governance.policies.actions import save_policy
from governance.promotions.records import ended_badly
from remediation.executions.sweeps import sweep
from remediation.models import Execution

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def claimed(agent, problem: str = "disk") -> dict:
    """A problem decided AUTO_HEAL and taken by the host's agent, which never said it started."""
    [result] = agent.post_metrics(agent.sample(problem)).json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    [action] = agent.take_actions(start=False)
    return action


def after_window(settings, claims: int = 1) -> timezone.datetime:
    return timezone.now() + claims * timedelta(seconds=settings.WARDEN_AGENT_ACK_SECONDS + 1)


def audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def automatic_attempts() -> int:
    return sum(Pattern.objects.values_list("auto_remediation_attempts", flat=True))


def test_a_claim_runs_only_once_its_agent_says_it_started(agent, settings):
    # when the agent takes the action
    action = claimed(agent)

    # then it is only claimed: no start, no run lease, a short window to say it started
    execution = Execution.objects.get()
    assert execution.state == "claimed"
    assert execution.started_at is None
    assert action["start_within_seconds"] == settings.WARDEN_AGENT_ACK_SECONDS
    window = execution.lease_expires_at - timezone.now()
    assert window <= timedelta(seconds=settings.WARDEN_AGENT_ACK_SECONDS)
    [taken] = audit("execution.claimed")
    assert taken.actor == f"agent:{agent.host.name}"
    assert not audit("execution.started")

    # when it says it started
    response = agent.start(action)

    # then it is running from now, under the agent's full lease
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "running"
    assert body["lease_seconds"] == settings.WARDEN_AGENT_LEASE_SECONDS
    execution.refresh_from_db()
    assert execution.state == "running"
    assert execution.started_at is not None
    assert execution.lease_expires_at > timezone.now() + timedelta(
        seconds=settings.WARDEN_AGENT_LEASE_SECONDS - 10
    )
    [started] = audit("execution.started")
    assert started.data["token"] == action["token"]
    assert started.data["argv"] == action["argv"]


def test_saying_it_started_again_answers_the_same_and_starts_it_once(agent):
    # an agent whose first answer was lost says it again
    action = claimed(agent)
    first = agent.start(action)
    again = agent.start(action)

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(audit("execution.started")) == 1


def test_an_unacknowledged_claim_is_not_judged_by_the_hosts_readings(agent, settings):
    # given a claim whose agent went away before it started
    claimed(agent)

    # when the host goes on reporting the problem, well past the run's lease
    for _ in range(settings.WARDEN_VERIFY_SAMPLES + 2):
        agent.post_metrics(agent.sample("disk"))
    sweep(timezone.now() + timedelta(seconds=settings.WARDEN_AGENT_LEASE_SECONDS + 1))

    # then nothing judged it failed, nothing is rolled back or counted: it is offered again
    execution = Execution.objects.get()
    assert execution.state == "dispatched"
    assert execution.verified_by == ""
    assert not audit("execution.failed") and not audit("execution.rollback_pending")
    assert automatic_attempts() == 0
    assert not ended_badly(Execution.objects.all()).exists()


def test_a_claim_not_said_started_is_offered_again_with_the_same_token(agent, settings):
    # given a claim its agent never said it started
    action = claimed(agent)

    # when its window passes and the sweeper runs
    report = sweep(after_window(settings))

    # then it is waiting for the agent again, audited, and the agent is woken
    assert report.leases_expired == 1
    execution = Execution.objects.get()
    assert execution.state == "dispatched"
    assert execution.started_at is None
    [offered] = audit("execution.offered_again")
    assert offered.actor == "system"
    assert "nothing ran" in offered.summary

    # and the next poll offers it with the same token, which the agent may start
    [again] = agent.take_actions(start=False)
    assert again["token"] == action["token"]
    assert again["argv"] == action["argv"]
    assert agent.start(again).json()["state"] == "running"
    assert Execution.objects.get().offers == 0  # counted anew for its rollback


def test_the_next_poll_offers_it_again_without_waiting_for_the_sweeper(agent, settings):
    action = claimed(agent)
    Execution.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    [again] = agent.take_actions(start=False)

    assert again["token"] == action["token"]
    execution = Execution.objects.get()
    assert execution.state == "claimed"
    assert execution.offers == 2
    assert len(audit("execution.offered_again")) == 1
    assert len(audit("execution.claimed")) == 2


def test_after_enough_offers_it_is_cancelled_for_people_and_counts_nothing(agent, settings):
    settings.WARDEN_AGENT_OFFERS = 2
    claimed(agent)
    for _ in range(settings.WARDEN_AGENT_OFFERS - 1):
        Execution.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert len(agent.take_actions(start=False)) == 1

    sweep(after_window(settings))

    execution = Execution.objects.get()
    assert execution.state == "cancelled"
    assert execution.started_at is None
    assert "took it 2 times and never said it started" in execution.cancel_reason
    [cancelled] = audit("execution.cancelled")
    assert cancelled.data["ran"] is False
    assert cancelled.data["was"] == "claimed"
    assert execution.ticket.status == "escalated"
    assert automatic_attempts() == 0
    assert not ended_badly(Execution.objects.all()).exists()
    assert not audit("execution.rollback_pending")
    assert agent.take_actions() == []


def test_an_unacknowledged_claim_with_another_failure_demotes_nothing(
    agent, other_agent, alice, settings
):
    # given a policy that loses its autonomy after two failed fixes, on two hosts at once
    policy = Policy.objects.get(category="disk", enabled=True)
    policy.blast_radius_max_percent = 100.0
    save_policy(policy, actor=alice, reason="two hosts at once", now=timezone.now())
    settings.WARDEN_AGENT_OFFERS = 1

    # and one fix that really failed on its host
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    assert agent.report(action, ok=False).json()["state"] == "rollback_pending"

    # when the other host's agent takes its fix and goes away before starting it
    claimed(other_agent)
    sweep(after_window(settings))

    # then that one is cancelled as never run, and the policy keeps its level
    unstarted = Execution.objects.get(host=other_agent.host)
    assert unstarted.state == "cancelled"
    policy.refresh_from_db()
    assert policy.autonomy_level == 3
    assert not audit("policy.demoted") and not audit("pattern.demoted")
    assert automatic_attempts() == 1
    assert ended_badly(Execution.objects.all()).count() == 1


def test_a_start_after_it_was_offered_again_is_refused(agent, settings):
    action = claimed(agent)
    sweep(after_window(settings))

    response = agent.start(action)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_claimed"
    assert Execution.objects.get().state == "dispatched"


def test_a_pause_committed_after_the_claim_holds_it_at_the_start(agent, alice):
    action = claimed(agent)
    pause_automation(
        Pause(scope=PauseScope.HOST, host=agent.host),
        actor=alice,
        reason="maintenance window",
        now=timezone.now(),
    )

    response = agent.start(action)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_claimed"
    execution = Execution.objects.get()
    assert execution.state == "held"
    assert execution.started_at is None
    assert not audit("execution.started")


def test_only_the_claims_own_token_and_host_can_start_it(agent, other_agent):
    action = claimed(agent)

    stale = agent.start({**action, "token": action["token"] + 1})
    foreign = other_agent.start(action)
    unknown = agent.start({**action, "execution_id": 987654})
    bad = agent.post(f"/api/v1/agent/actions/{action['execution_id']}/started", {"token": "x"})

    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_token"
    assert foreign.status_code == 404
    assert unknown.status_code == 404
    assert bad.status_code == 400 and "token" in bad.json()["error"]["fields"]
    assert Execution.objects.get().state == "claimed"


def test_an_agent_that_did_not_start_says_so_and_it_is_offered_again(agent):
    # an agent that restarted before it started the action says so
    action = claimed(agent)

    response = agent.report(action, not_started=True, output="the agent stopped first")

    assert response.status_code == 200
    execution = Execution.objects.get()
    assert execution.state == "dispatched"
    assert execution.started_at is None
    assert len(audit("execution.offered_again")) == 1
    assert automatic_attempts() == 0
    [again] = agent.take_actions()
    assert again["token"] == action["token"]


def test_an_agent_whose_start_was_taken_but_not_answered_says_it_never_started(agent):
    # Warden took the start, its answer was lost, and the agent gave up: it never ran it
    action = claimed(agent)
    assert agent.start(action).status_code == 200

    response = agent.report(action, not_started=True, output="no answer to its start")

    # then it ends cancelled as never run: nothing to verify, roll back or count
    assert response.status_code == 200
    execution = Execution.objects.get()
    assert execution.state == "cancelled"
    assert execution.started_at is None
    [cancelled] = audit("execution.cancelled")
    assert cancelled.data == {**cancelled.data, "was": "running", "ran": False}
    assert cancelled.actor == f"agent:{agent.host.name}"
    assert automatic_attempts() == 0
    assert not ended_badly(Execution.objects.all()).exists()
    assert not audit("execution.rollback_pending")


def test_an_agent_older_than_the_start_reports_what_ran_and_it_is_verified(agent):
    # an agent that never says it started runs the action and reports it
    action = claimed(agent)

    response = agent.report(action, ok=True)

    # then it started as the report came, and the host's next readings verify it
    assert response.json()["state"] == "verifying"
    execution = Execution.objects.get()
    assert execution.started_at is not None
    assert [e.action for e in AuditEvent.objects.filter(object_id=str(execution.pk))][-2:] == [
        "execution.started",
        "execution.verifying",
    ]
    agent.post_metrics(agent.sample())
    assert Execution.objects.get().state == "succeeded"


def test_a_refused_claim_is_cancelled_and_counts_nothing(agent):
    action = claimed(agent)

    response = agent.report(action, ok=False, argv=[], output="not allow-listed")

    assert response.json()["state"] == "cancelled"
    execution = Execution.objects.get()
    assert execution.started_at is None
    assert automatic_attempts() == 0
    assert not ended_badly(Execution.objects.all()).exists()


def test_a_rollback_is_started_by_its_agent_too_and_offered_again_until_it_is(agent, settings):
    # given a fix that failed, its rollback pending
    agent.post_metrics(agent.sample("disk"))
    [run] = agent.take_actions()
    agent.report(run, ok=False)
    assert Execution.objects.get().state == "rollback_pending"

    # when the agent takes the rollback and goes away before starting it
    [rollback] = agent.take_actions(start=False)
    assert rollback["kind"] == "rollback"
    assert Execution.objects.get().state == "rollback_claimed"
    sweep(after_window(settings))

    # then it waits for the agent again (not failed), and runs once the agent says so
    assert Execution.objects.get().state == "rollback_pending"
    [again] = agent.take_actions(start=False)
    assert again["token"] == rollback["token"]
    assert agent.start(again).json()["state"] == "rolling_back"
    assert agent.report(again, ok=True).json()["state"] == "rolled_back"


def test_a_rollback_never_started_after_enough_offers_fails_for_a_person(agent, settings):
    settings.WARDEN_AGENT_OFFERS = 1
    agent.post_metrics(agent.sample("disk"))
    [run] = agent.take_actions()
    agent.report(run, ok=False)
    agent.take_actions(start=False)

    sweep(after_window(settings))

    execution = Execution.objects.get()
    assert execution.state == "rollback_failed"
    [failed] = audit("execution.rollback_failed")
    assert "never said it started" in failed.summary
    assert "a person must check the host" in failed.summary


def test_a_run_token_cannot_start_its_rollback(agent):
    agent.post_metrics(agent.sample("disk"))
    [run] = agent.take_actions()
    agent.report(run, ok=False)
    agent.take_actions(start=False)

    response = agent.start(run)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "stale_token"
    assert Execution.objects.get().state == "rollback_claimed"
