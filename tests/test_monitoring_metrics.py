"""The seed's metrics at /metrics: reliability, automatic remediation, feedback, approvals.

Every number is read from the database at scrape time, so every replica says the same.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.actions import give_feedback
from feedback.models import Feedback
from governance.approvals.actions import approve_request
from governance.models import ApprovalRequest, Decision
from remediation.actions import cancel_execution, roll_back_execution
from remediation.models import Execution, Ticket
from tests.test_prometheus import samples, scrape

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

TOKEN = "scrape-token-for-monitoring-tests-0123"


@pytest.fixture
def read_metrics(client, settings):
    settings.WARDEN_METRICS_TOKEN = TOKEN

    def read() -> dict[tuple[str, tuple], float]:
        response = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        return samples(response)

    return read


def by_category(values, name: str) -> dict[str, float]:
    return {
        dict(labels)["category"]: value
        for (sample, labels), value in values.items()
        if sample == name
    }


def heal(agent, problem: str, ok: bool = True) -> Execution:
    """`problem` heals itself: the agent runs the queued fix, then fresh metrics verify it
    (ok) or the run fails and its rollback is run."""
    [result] = agent.post_metrics(agent.sample(problem)).json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    [action] = agent.take_actions()
    agent.report(action, ok=ok)
    if ok:
        agent.post_metrics(agent.sample())
    else:
        [rollback] = agent.take_actions()
        assert rollback["kind"] == "rollback"
        agent.report(rollback)
    return Execution.objects.get(ticket__ticket_id=result["ticket_id"])


def test_automatic_fixes_count_attempts_successes_and_failures_by_category(agent, read_metrics):
    # given a disk fix that worked, a memory fix that failed and was rolled back,
    # and a cpu fix still waiting for its agent
    assert heal(agent, "disk").state == "succeeded"
    assert heal(agent, "memory", ok=False).state == "rolled_back"
    agent.post_metrics(agent.sample("cpu"))

    # when Prometheus scrapes
    values = read_metrics()

    # then each category counts its own, and every category is there from the start
    attempts = by_category(values, "warden_auto_remediation_attempts_total")
    successes = by_category(values, "warden_auto_remediation_successes_total")
    failures = by_category(values, "warden_auto_remediation_failures_total")
    assert (attempts["disk"], successes["disk"], failures["disk"]) == (1, 1, 0)
    assert (attempts["memory"], successes["memory"], failures["memory"]) == (1, 0, 1)
    assert (attempts["cpu"], successes["cpu"], failures["cpu"]) == (1, 0, 0)
    assert (attempts["dns"], successes["dns"], failures["dns"]) == (0, 0, 0)


def test_a_success_a_person_rolls_back_becomes_a_failure_and_no_counter_goes_down(
    agent, alice, read_metrics
):
    # given a verified automatic fix
    execution = heal(agent, "disk")
    before = read_metrics()

    # when a supervisor rolls it back and the agent runs the rollback
    roll_back_execution(
        execution, actor=alice, reason="wrong service restarted", now=timezone.now()
    )
    [rollback] = agent.take_actions()
    agent.report(rollback)
    after = read_metrics()

    # then it counts as a failure, and stays counted as the success it was (counters only grow)
    assert Execution.objects.get(pk=execution.pk).state == "rolled_back"
    assert by_category(before, "warden_auto_remediation_failures_total")["disk"] == 0
    assert by_category(after, "warden_auto_remediation_failures_total")["disk"] == 1
    assert by_category(after, "warden_auto_remediation_successes_total")["disk"] == 1
    assert by_category(after, "warden_auto_remediation_attempts_total")["disk"] == 1
    for name, value in before.items():
        if name[0].endswith("_total"):
            assert after[name] >= value, name


def test_a_fix_cancelled_while_it_ran_is_a_failure_and_one_cancelled_before_is_not(
    agent, alice, read_metrics
):
    def cancel(execution_id: int) -> None:
        execution = Execution.objects.get(pk=execution_id)
        cancel_execution(execution, actor=alice, reason="change freeze", now=timezone.now())

    # given a supervisor cancels a disk fix the agent is running
    agent.post_metrics(agent.sample("disk"))
    [running] = agent.take_actions()
    cancel(running["execution_id"])

    # and then a cpu fix no agent has taken yet
    [result] = agent.post_metrics(agent.sample("cpu")).json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    cancel(Execution.objects.get(ticket__ticket_id=result["ticket_id"]).pk)

    # then only the one that ran counts as failed (as its pattern counts it)
    values = read_metrics()
    assert by_category(values, "warden_auto_remediation_failures_total")["disk"] == 1
    assert by_category(values, "warden_auto_remediation_failures_total")["cpu"] == 0
    assert by_category(values, "warden_auto_remediation_attempts_total")["cpu"] == 1


def test_fixes_people_approved_are_not_automatic(agent, bob, carol, read_metrics):
    # given a risky firewall change two approvers let run, and which worked
    agent.post_metrics(agent.sample("firewall"))
    request = ApprovalRequest.objects.get()
    now = timezone.now()
    with agent.capture(execute=True):
        approve_request(request, actor=bob, reason="change window", now=now)
        approve_request(request, actor=carol, reason="change window", now=now)
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    assert Execution.objects.get().state == "succeeded"

    # then it is no automatic remediation
    values = read_metrics()
    assert by_category(values, "warden_auto_remediation_attempts_total")["firewall"] == 0
    assert by_category(values, "warden_auto_remediation_successes_total")["firewall"] == 0


def test_feedback_is_counted_by_category_and_type(agent, alice, read_metrics):
    # given feedback on a disk ticket and on a memory ticket
    heal(agent, "disk")
    heal(agent, "memory", ok=False)
    disk, memory = Ticket.objects.get(category="disk"), Ticket.objects.get(category="memory")
    for ticket, kind in [(disk, "positive"), (disk, "positive"), (memory, "negative")]:
        give_feedback(
            Feedback(ticket=ticket, feedback_type=kind, rating=4),
            actor=alice,
            reason="",
            now=timezone.now(),
        )

    # when
    values = read_metrics()

    # then
    def feedback(category: str, kind: str) -> float:
        return values[("warden_feedback_total", (("category", category), ("type", kind)))]

    assert feedback("disk", "positive") == 2
    assert feedback("disk", "negative") == 0
    assert feedback("memory", "negative") == 1
    assert feedback("cpu", "neutral") == 0


def test_pending_approvals_are_counted_by_how_long_they_have_waited(
    agent, other_agent, read_metrics
):
    # given one request waiting for two hours and one just asked
    agent.post_metrics(agent.sample("firewall"))
    ApprovalRequest.objects.update(created_at=timezone.now() - timedelta(hours=2))
    other_agent.post_metrics(other_agent.sample("dns"))

    # when
    values = read_metrics()

    # then the buckets are cumulative and the oldest says two hours
    def within(le: str) -> float:
        return values[("warden_approvals_pending_by_age", (("le", le),))]

    assert values[("warden_approvals_pending", ())] == 2
    assert [within(le) for le in ("300", "3600", "86400", "+Inf")] == [1, 1, 2, 2]
    oldest = values[("warden_approvals_oldest_pending_seconds", ())]
    assert 7200 <= oldest < 7200 + 60


def test_nothing_pending_reads_zero(db, read_metrics):
    values = read_metrics()
    assert values[("warden_approvals_pending", ())] == 0
    assert values[("warden_approvals_oldest_pending_seconds", ())] == 0
    assert values[("warden_approvals_pending_by_age", (("le", "+Inf"),))] == 0


def test_reliability_score_averages_the_last_day_of_decisions_by_category(
    agent, other_agent, read_metrics
):
    # given two disk decisions scoring 40 and 80, and a memory one
    agent.post_metrics(agent.sample("disk"))
    other_agent.post_metrics(other_agent.sample("disk"))
    agent.post_metrics(agent.sample("memory"))
    first, second = Decision.objects.filter(ticket__category="disk").order_by("pk")
    memory = Decision.objects.get(ticket__category="memory")
    for decision, score in [(first, 40.0), (second, 80.0)]:
        Decision.objects.filter(pk=decision.pk).update(
            reliability={**decision.reliability, "overall_score": score}
        )

    # then the gauge is their average, and the decisions it averages are counted
    values = read_metrics()
    assert by_category(values, "warden_reliability_score")["disk"] == 60.0
    assert by_category(values, "warden_reliability_decisions")["disk"] == 2
    assert by_category(values, "warden_reliability_score")["memory"] == pytest.approx(
        memory.reliability["overall_score"]
    )
    assert "cpu" not in by_category(values, "warden_reliability_score")

    # and a decision older than a day no longer counts
    Decision.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(days=2))
    values = read_metrics()
    assert by_category(values, "warden_reliability_score")["disk"] == 40.0
    assert by_category(values, "warden_reliability_decisions")["disk"] == 1


def test_a_scrape_costs_the_same_few_queries_whatever_the_data(
    agent, other_agent, alice, read_metrics, django_assert_num_queries
):
    # given a little of everything
    heal(agent, "disk")
    agent.post_metrics(agent.sample("firewall"))
    with django_assert_num_queries(SCRAPE_QUERIES):
        read_metrics()

    # when there is more of it, in more categories
    heal(agent, "memory", ok=False)
    heal(other_agent, "disk")
    other_agent.post_metrics(other_agent.sample("dns"))
    for ticket in Ticket.objects.all():
        give_feedback(
            Feedback(ticket=ticket, feedback_type="neutral"),
            actor=alice,
            reason="",
            now=timezone.now(),
        )

    # then the scrape still takes the same queries: aggregates, no query per row
    with django_assert_num_queries(SCRAPE_QUERIES):
        read_metrics()


# tickets, executions, decisions, pending approvals, pauses, reliability, automatic
# remediations, feedback, the audit head, and drift (the serving model and its samples)
SCRAPE_QUERIES = 11
