"""Time is the server's: an agent's clock, behind or ahead, never decides whether a fix
worked, whether a batch is kept, or whether a policy loses its autonomy. Readings are
judged by when the server received them (the agent's stamp corrected by the host's
measured skew), and a reading older than the bound confirms nothing."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from governance.models import AuditEvent, Policy
from governance.policies.actions import save_policy
from remediation.actions import add_host
from remediation.executions.sweeps import sweep
from remediation.models import Execution, Host, Ticket
from scoring.models import MetricSample
from scoring.samples import assumed_skew, reading_is_fresh
from tests.conftest import HEALTHY, PROBLEMS, AgentClient

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

BEHIND = timedelta(minutes=-10)
AHEAD = timedelta(minutes=10)


class SkewedAgent(AgentClient):
    """An agent whose host clock is `offset` away from the server's."""

    def __init__(self, *args: Any, offset: timedelta) -> None:
        super().__init__(*args)
        self.offset = offset
        self.clock = timezone.now() + offset - timedelta(minutes=30)

    def sample(self, problem: str | None = None, **metrics: Any) -> dict:
        """A reading taken now, stamped by this host's clock."""
        self.clock = max(self.clock + timedelta(seconds=1), timezone.now() + self.offset)
        values = {**HEALTHY, **(PROBLEMS[problem] if problem else {}), **metrics}
        return {"host": self.host.name, "taken_at": self.clock.isoformat(), **values}

    def sample_at(self, taken_at, problem: str | None = None, **metrics: Any) -> dict:
        """A reading stamped `taken_at` by this agent's clock (a buffered one, say)."""
        return {**self.sample(problem, **metrics), "taken_at": taken_at.isoformat()}


def skewed_agent(name: str, offset: timedelta, capture: Any) -> SkewedAgent:
    host, key = add_host(name, labels={"env": "test"}, now=timezone.now())
    return SkewedAgent(Client(), host, key, capture, offset=offset)


@pytest.fixture
def behind(approved_model, django_capture_on_commit_callbacks) -> SkewedAgent:
    return skewed_agent("slow-01", BEHIND, django_capture_on_commit_callbacks)


@pytest.fixture
def ahead(approved_model, django_capture_on_commit_callbacks) -> SkewedAgent:
    return skewed_agent("fast-01", AHEAD, django_capture_on_commit_callbacks)


def run_disk_fix(agent: AgentClient) -> Execution:
    """A disk problem healed automatically; the agent says the cleanup worked."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    [action] = agent.take_actions()
    assert agent.report(action, ok=True).json()["state"] == "verifying"
    return Execution.objects.get(ticket__ticket_id=result["ticket_id"])


def test_a_working_fix_on_a_host_ten_minutes_behind_is_verified(behind):
    execution = run_disk_fix(behind)

    # when the host's next reading (stamped 10 minutes in the past) is healthy
    assert behind.post_metrics(behind.sample()).status_code == 201

    # then the fix is verified, not left to fail at the deadline and be rolled back
    execution.refresh_from_db()
    assert execution.state == "succeeded"
    assert execution.verified_by == "readings"
    assert Ticket.objects.get(pk=execution.ticket_id).status == "resolved"


def test_a_batch_from_a_host_ten_minutes_ahead_is_kept_and_a_full_disk_gets_its_ticket(ahead):
    response = ahead.post_metrics([ahead.sample(), ahead.sample("disk")])

    assert response.status_code == 201, response.content
    [healthy, full] = response.json()["results"]
    assert healthy["severity"] == "NO_ACTION"
    assert full["category"] == "disk" and full["ticket_id"]
    assert Ticket.objects.get(ticket_id=full["ticket_id"]).host == ahead.host
    assert MetricSample.objects.filter(host=ahead.host).count() == 2


def test_a_working_fix_on_a_host_ten_minutes_ahead_is_verified(ahead):
    execution = run_disk_fix(ahead)
    ahead.post_metrics(ahead.sample())
    execution.refresh_from_db()
    assert execution.state == "succeeded"


def test_a_sample_stamped_days_ahead_is_refused_naming_the_field(ahead):
    response = ahead.post_metrics(
        [ahead.sample_at(timezone.now() + timedelta(days=2)), ahead.sample()]
    )
    assert response.status_code == 400
    [message] = response.json()["error"]["fields"]["[0].taken_at"]
    assert "ahead of the server's clock" in message
    assert not MetricSample.objects.exists()


def test_the_hosts_measured_skew_is_kept_and_each_sample_keeps_server_time(behind):
    before = timezone.now()
    behind.post_metrics(behind.sample())
    after = timezone.now()

    host = Host.objects.get(pk=behind.host.pk)
    assert -610 < host.clock_skew_seconds < -590
    assert before <= host.clock_checked_at <= after
    [sample] = MetricSample.objects.filter(host=host)
    assert before <= sample.received_at <= after
    # when it was taken, on the server's clock: the agent's stamp corrected by the skew
    assert before - timedelta(seconds=5) <= sample.observed_at <= after


def test_a_skewed_clock_is_flagged_on_the_hosts_admin_page(behind, agent, alice, client):
    behind.post_metrics(behind.sample())
    agent.post_metrics(agent.sample())
    client.force_login(alice)

    skewed = client.get(f"/admin/remediation/host/{behind.host.pk}/change/").content.decode()
    right = client.get(f"/admin/remediation/host/{agent.host.pk}/change/").content.decode()

    assert "Clock off by" in skewed and "behind the server" in skewed
    assert "Clock off by" not in right


def test_a_skewed_clock_is_flagged_in_the_consoles_fleet_panel(behind, agent, alice, client):
    behind.post_metrics(behind.sample())
    agent.post_metrics(agent.sample())
    client.force_login(alice)

    page = client.get("/console/panels").content.decode()

    assert page.count("clock-skewed") == 1
    assert "clock 10 min behind" in page


def test_a_verdict_on_a_skewed_host_says_it_was_judged_on_server_time(behind):
    execution = run_disk_fix(behind)
    behind.post_metrics(behind.sample())

    succeeded = AuditEvent.objects.get(action="execution.succeeded", object_id=str(execution.pk))
    assert "clock" in succeeded.summary and "server time" in succeeded.summary
    assert -610 < succeeded.data["clock_skew_seconds"] < -590


def test_a_healthy_reading_taken_before_the_fix_started_verifies_nothing(agent):
    execution = run_disk_fix(agent)
    stale = agent.sample()
    stale["taken_at"] = (execution.started_at - timedelta(seconds=30)).isoformat()

    # a reading the agent buffered from before the fix, sent now with a fresh problem one
    agent.post_metrics([stale, agent.sample("disk")])

    execution.refresh_from_db()
    assert execution.state == "verifying"


def test_a_healthy_reading_older_than_the_bound_verifies_nothing(agent, settings):
    settings.WARDEN_READING_MAX_AGE_SECONDS = 60
    execution = run_disk_fix(agent)
    agent.post_metrics(agent.sample("disk"))  # the host's clock is measured right

    # an old reading arrives long after it was taken
    old = agent.sample()
    old["taken_at"] = (timezone.now() - timedelta(minutes=5)).isoformat()
    agent.post_metrics(old)

    execution.refresh_from_db()
    assert execution.state == "verifying"


@pytest.mark.django_db
def test_a_29_day_old_reading_is_not_fresh(agent):
    now = timezone.now()
    old = agent.sample()
    old["taken_at"] = (now - timedelta(days=29)).isoformat()
    agent.post_metrics(old)
    [sample] = MetricSample.objects.all()

    assert not reading_is_fresh(sample, now)
    assert not reading_is_fresh(sample, now + timedelta(days=29))
    agent.post_metrics(agent.sample())
    newest = MetricSample.objects.order_by("-taken_at").first()
    assert reading_is_fresh(newest, timezone.now())


def disk_policy() -> Policy:
    return Policy.objects.get(category="disk", enabled=True)


@pytest.fixture
def two_at_once(alice) -> None:
    """The disk policy lets two hosts be fixed at once (its blast radius)."""
    policy = disk_policy()
    policy.blast_radius_max_percent = 100.0
    save_policy(policy, actor=alice, reason="two hosts at once is fine", now=timezone.now())


def test_two_hosts_ten_minutes_behind_whose_fixes_work_demote_nothing(
    approved_model, django_capture_on_commit_callbacks
):
    hosts = [
        skewed_agent(name, BEHIND, django_capture_on_commit_callbacks)
        for name in ("slow-01", "slow-02")
    ]
    assert disk_policy().autonomy_level == 3

    for agent in hosts:
        execution = run_disk_fix(agent)
        agent.post_metrics(agent.sample())
        execution.refresh_from_db()
        assert execution.state == "succeeded"

    # and the verification deadline passing changes nothing either
    sweep(timezone.now() + timedelta(hours=1))
    assert disk_policy().autonomy_level == 3
    assert not AuditEvent.objects.filter(action__endswith=".demoted").exists()


def test_fixes_judged_failed_on_time_only_on_skewed_hosts_demote_no_policy(
    approved_model, two_at_once, django_capture_on_commit_callbacks
):
    # two hosts whose clocks are flagged, whose fixes ran but whose readings stopped
    hosts = [
        skewed_agent(name, BEHIND, django_capture_on_commit_callbacks)
        for name in ("slow-01", "slow-02")
    ]
    executions = [run_disk_fix(agent) for agent in hosts]

    # when both verifications pass their deadline
    sweep(timezone.now() + timedelta(hours=1))

    # then each fix failed and is rolled back, but their clocks cannot lower the policy
    for execution in executions:
        execution.refresh_from_db()
        assert execution.state == "rollback_pending"
        assert execution.verified_by == "deadline"
    assert disk_policy().autonomy_level == 3
    assert not AuditEvent.objects.filter(action="policy.demoted").exists()


def test_a_right_clocks_failure_with_a_skewed_hosts_still_demotes(
    agent, approved_model, two_at_once, django_capture_on_commit_callbacks
):
    skewed = skewed_agent("slow-01", BEHIND, django_capture_on_commit_callbacks)
    executions = [run_disk_fix(skewed), run_disk_fix(agent)]

    sweep(timezone.now() + timedelta(hours=1))

    assert all(Execution.objects.get(pk=e.pk).state == "rollback_pending" for e in executions)
    assert disk_policy().autonomy_level == 1
    assert AuditEvent.objects.filter(action="policy.demoted").count() == 1


def test_a_batch_its_agent_held_back_is_corrected_by_the_known_skew_not_its_own():
    # a clock known 10 min behind, and a batch that arrives as its readings were taken
    assert assumed_skew(-600.0, -601.0) == -601.0
    # a batch held back 5 minutes by an agent whose clock is right stays 5 minutes old
    assert assumed_skew(0.3, -300.0) == 0.0
    # the clock moving forward is taken at once; latency is not a clock
    assert assumed_skew(-600.0, 0.5) == 0.0
    assert assumed_skew(None, -600.0) == -600.0
