"""The seed's feedback, pattern and stats endpoints, with real tokens, per role."""

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Feedback, Pattern
from governance.models import ApprovalRequest, AuditEvent, Decision
from remediation.actions import add_host
from remediation.models import Execution, Runbook, Ticket

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

# The seed's feedback body, every field of it.
SEED_FEEDBACK = {
    "feedback_type": "negative",
    "rating": 2,
    "was_helpful": False,
    "resolution_accurate": False,
    "actions_worked": False,
    "comment": "The cleanup ran but the disk filled again",
    "what_worked": "Rotating the logs",
    "what_didnt_work": None,
    "suggestions": "Look for the process writing /var/tmp",
    "actual_resolution": "Had to move the spool to a bigger volume",
    "actual_actions_taken": [
        "stopped the spooler",
        {"action": "move /var/spool", "system": "web-01"},
    ],
    "time_to_resolve": 30.0,
}


def give(api, user, ticket, **changes):
    return api(user).post(
        "/api/v1/feedback", {**SEED_FEEDBACK, "ticket_id": ticket.ticket_id, **changes}
    )


def test_every_seed_field_is_stored_and_audited(api, alice, healed):
    response = give(api, alice, healed)

    assert response.status_code == 201, response.content
    stored = Feedback.objects.get()
    assert stored.submitted_by == alice
    assert stored.actual_actions_taken == SEED_FEEDBACK["actual_actions_taken"]
    assert stored.actual_resolution == SEED_FEEDBACK["actual_resolution"]
    assert stored.what_didnt_work == ""  # the seed's null
    assert stored.time_to_resolve_minutes == 30.0
    assert (stored.was_helpful, stored.resolution_accurate, stored.actions_worked) == (
        False,
        False,
        False,
    )
    body = response.json()
    assert body["actual_actions_taken"] == SEED_FEEDBACK["actual_actions_taken"]
    assert body["submitted_by"] == "alice" and body["ticket_id"] == healed.ticket_id
    given = AuditEvent.objects.get(action="feedback.given")
    assert given.actor == "user:alice" and given.ticket_id == healed.ticket_id


def test_feedback_moves_the_tickets_reliability_and_its_pattern_at_once(api, alice, healed):
    # when people say the fix did not hold
    bad = give(api, alice, healed).json()

    # then the ticket's reliability falls and its pattern counts the verdict
    assert bad["reliability_score"] < bad["reliability_score_before"]
    assert bad["pattern"]["negative_count"] == 1
    assert bad["pattern"]["id"] == healed.pattern_id
    assert Pattern.objects.get(pk=healed.pattern_id).negative_count == 1
    shown = api(alice).get(f"/api/v1/tickets/{healed.ticket_id}").json()
    assert shown["reliability_score"] == bad["reliability_score"]

    # and when they later say it worked, it rises again
    good = give(api, alice, healed, feedback_type="positive", rating=5, actions_worked=True).json()
    assert good["reliability_score"] > bad["reliability_score"]
    assert good["pattern"]["positive_count"] == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ticket_id": "NOPE-1"}, "ticket_id"),
        ({"feedback_type": "great"}, "feedback_type"),
        ({"rating": 6}, "rating"),
        ({"rating": "five"}, "rating"),
        ({"time_to_resolve": -1}, "time_to_resolve"),
        ({"actual_actions_taken": "restarted"}, "actual_actions_taken"),
        ({"actual_actions_taken": [42]}, "actual_actions_taken[0]"),
        ({"was_helpful": "perhaps"}, "was_helpful"),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(api, alice, healed, changes, field):
    response = give(api, alice, healed, **changes)

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Feedback.objects.exists()
    assert Pattern.objects.get(pk=healed.pattern_id).negative_count == 0


@pytest.mark.parametrize("persona", ["bob", "dave"])
def test_approvers_and_compliance_give_no_feedback(request, api, healed, persona):
    response = give(api, request.getfixturevalue(persona), healed)
    assert response.status_code == 403
    assert not Feedback.objects.exists()


def test_an_agent_key_gives_no_feedback(client, agent, healed):
    response = client.post(
        "/api/v1/feedback",
        {**SEED_FEEDBACK, "ticket_id": healed.ticket_id},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {agent.key}",
    )
    assert response.status_code == 401
    assert not Feedback.objects.exists()


# --- Patterns --------------------------------------------------------------------------------


@pytest.fixture
def two_patterns(db):
    now = timezone.now()
    disk = Pattern.objects.create(
        signature="d" * 64,
        category="disk",
        key_terms=["disk_usage"],
        occurrence_count=7,
        positive_count=9,
        negative_count=1,
        avg_reliability=88.0,
        auto_remediation_attempts=6,
        auto_remediation_successes=6,
        success_count=4,
        failure_count=1,
        eligible_for_auto_remediation=True,
        last_seen_at=now,
    )
    network = Pattern.objects.create(
        signature="n" * 64,
        category="network",
        key_terms=["vlan", "timeout"],
        occurrence_count=2,
        success_count=1,
        failure_count=2,
        last_seen_at=now,
    )
    return disk, network


def test_patterns_filter_by_category_and_occurrences(api, dave, two_patterns):
    disk, network = two_patterns
    reader = api(dave)

    everything = reader.get("/api/v1/patterns").json()
    assert [p["id"] for p in everything["results"]] == [disk.pk, network.pk]
    [only] = reader.get("/api/v1/patterns", category="network").json()["results"]
    assert only["key_terms"] == ["vlan", "timeout"] and only["hash"] == "n" * 64
    [frequent] = reader.get("/api/v1/patterns", min_occurrences=5).json()["results"]
    assert frequent["id"] == disk.pk
    assert frequent["eligible_for_auto_remediation"] is True
    assert frequent["positive_feedback_rate"] == 0.9
    assert frequent["auto_remediation_success_rate"] == 1.0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"category": "kitchen"}, "category"),
        ({"min_occurrences": "many"}, "min_occurrences"),
        ({"min_occurrences": -1}, "min_occurrences"),
    ],
)
def test_bad_pattern_parameters_are_refused_naming_them(api, dave, params, field):
    response = api(dave).get("/api/v1/patterns", **params)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


# --- Stats on a known fixture -------------------------------------------------------------


@pytest.fixture
def history(db, two_patterns):
    """Three tickets this month (and one older), their decisions, executions and feedback."""
    now = timezone.now()
    host, _ = add_host("web-07", now=timezone.now())
    disk_runbook = Runbook.objects.get(name="clean-temp-and-rotate-logs")
    dns_runbook = Runbook.objects.get(name="switch-dns-resolver")

    def ticket(number, category, status, auto, days_ago=1):
        return Ticket.objects.create(
            ticket_id=f"T-{number}",
            title=f"ticket {number}",
            host=host,
            category=category,
            status=status,
            enable_auto_remediation=auto,
            opened_at=now - timedelta(days=days_ago),
        )

    def decision(of, score, level, confidence, requires_approval=False, minutes_ago=5):
        return Decision.objects.create(
            ticket=of,
            outcome="HITL_REQUIRED" if requires_approval else "AUTO_HEAL",
            model_outcome="AUTO_HEAL",
            confidence=confidence,
            allowed=True,
            requires_approval=requires_approval,
            reliability={"overall_score": score, "confidence_level": level},
            created_at=now - timedelta(minutes=minutes_ago),
        )

    def execution(of, runbook, state, request=None):
        return Execution.objects.create(
            ticket=of,
            host=host,
            runbook=runbook,
            idempotency_key=f"{of.ticket_id}:{state}",
            state=state,
            approval_request=request,
            started_at=now,
        )

    healed = ticket(1, "disk", "resolved", auto=True)
    decision(healed, 10.0, "low", 0.2, minutes_ago=50)  # an older decision: not counted
    decision(healed, 80.0, "high", 0.9)
    execution(healed, disk_runbook, "succeeded")
    failed = ticket(2, "disk", "closed", auto=True)
    decision(failed, 60.0, "medium", 0.7)
    execution(failed, disk_runbook, "failed")
    approved = ticket(3, "dns", "escalated", auto=False)
    decided = decision(approved, 50.0, "low", 0.6, requires_approval=True)
    request = ApprovalRequest.objects.create(
        ticket=approved,
        decision=decided,
        runbook=dns_runbook,
        status="approved",
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    execution(approved, dns_runbook, "succeeded", request)
    old = ticket(4, "memory", "open", auto=True, days_ago=40)
    decision(old, 99.0, "very_high", 0.99)
    for kind, rating, days_ago in [
        ("positive", 5, 1),
        ("positive", 4, 2),
        ("negative", 1, 3),
        ("negative", 1, 45),
    ]:
        Feedback.objects.create(
            ticket=healed,
            feedback_type=kind,
            rating=rating,
            created_at=now - timedelta(days=days_ago),
        )


def test_reliability_stats_on_a_known_history(api, dave, history):
    stats = api(dave).get("/api/v1/stats/reliability", days=30).json()

    assert stats["days"] == 30
    assert (stats["total_tickets"], stats["resolved_tickets"]) == (3, 1)
    assert stats["resolution_rate"] == 0.3333
    assert stats["avg_reliability_score"] == 63.33
    assert stats["avg_confidence_score"] == 0.73
    assert stats["confidence_levels"] == {"very_high": 0, "high": 1, "medium": 1, "low": 1}
    assert stats["by_category"] == {
        "disk": {
            "tickets": 2,
            "resolved": 1,
            "resolution_rate": 0.5,
            "avg_reliability_score": 70.0,
        },
        "dns": {"tickets": 1, "resolved": 0, "resolution_rate": 0.0, "avg_reliability_score": 50.0},
    }
    assert stats["feedback"] == {
        "total": 3,
        "positive": 2,
        "negative": 1,
        "neutral": 0,
        "positive_feedback_rate": 0.6667,
        "negative_feedback_rate": 0.3333,
        "avg_rating": 3.33,
        "from_services": 0,
    }


def test_auto_remediation_stats_on_a_known_history(api, dave, history):
    stats = api(dave).get("/api/v1/stats/auto-remediation", days=30).json()

    assert stats["total_tickets"] == 3
    assert (stats["auto_remediation_enabled_tickets"], stats["auto_remediated_tickets"]) == (2, 2)
    assert stats["execution_rate"] == 1.0
    assert stats["automatic_executions"] == 2
    assert stats["automatic_executions_finished"] == 2
    assert stats["automatic_executions_succeeded"] == 1
    assert stats["success_rate"] == 0.5
    assert (stats["decisions_allowing_a_runbook"], stats["decisions_requiring_approval"]) == (4, 1)
    assert stats["approval_rate"] == 0.25
    assert stats["approval_requests"]["approved"] == 1
    assert stats["patterns"] == {"total": 2, "eligible_patterns": 1, "pattern_success_rate": 0.625}


def test_an_empty_period_has_no_rates_rather_than_zero(api, dave, db):
    stats = api(dave).get("/api/v1/stats/auto-remediation", days=1).json()
    assert stats["total_tickets"] == 0
    assert stats["execution_rate"] is None and stats["success_rate"] is None


@pytest.mark.parametrize("days", ["0", "3651", "a month", "1.5"])
@pytest.mark.parametrize("path", ["/api/v1/stats/reliability", "/api/v1/stats/auto-remediation"])
def test_a_bad_period_is_refused_naming_days(api, dave, path, days):
    response = api(dave).get(path, days=days)
    assert response.status_code == 400
    assert "days" in response.json()["error"]["fields"]


def test_stats_need_a_person_or_service_that_may_read_tickets(client, agent):
    assert client.get("/api/v1/stats/reliability").status_code == 401
    keyed = client.get("/api/v1/stats/reliability", HTTP_AUTHORIZATION=f"Bearer {agent.key}")
    assert keyed.status_code == 401
