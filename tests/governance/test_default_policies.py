"""The policies a fresh install starts with: safe problems heal, risky ones go to people."""

import importlib
import json
from dataclasses import fields, replace
from datetime import UTC, datetime

import pytest

from governance.rules.defaults import DEFAULT_POLICIES, default_policy, model_fields, snapshot
from governance.rules.engine import decide
from governance.rules.facts import (
    AUTO_HEAL,
    HITL_REQUIRED,
    Decision,
    ModelOutput,
    PolicySnapshot,
    RunbookFacts,
    Statistics,
    Switches,
    TicketFacts,
)
from remediation.choices import Category
from scoring.reliability import FeedbackFact, PatternFacts

# The runbook catalogue a fresh install seeds, read from its data migration.
CATALOGUE = importlib.import_module("remediation.migrations.0002_seed_catalogue").RUNBOOKS
DEMO_FLEET = Statistics(hosts_in_scope=20)  # run_demo's default fleet, nothing known yet
NOW = datetime(2025, 3, 15, 3, 17, tzinfo=UTC)  # a Saturday night: no window to rely on


def seeded_runbook(category: str) -> RunbookFacts:
    [row] = [row for row in CATALOGUE if row["category"] == category]
    return RunbookFacts(
        name=row["name"],
        action_type=row["action_type"],
        system=row["system"],
        reversible=row["reversible"],
        has_rollback_plan=bool(row.get("rollback_action")),
        commands=tuple(row["commands"]),
        touches=frozenset(row.get("touches", ())),
    )


def fresh_decision(
    category: str, confidence: float, stats: Statistics = DEMO_FLEET
) -> tuple[PolicySnapshot, Decision]:
    policy = snapshot(default_policy(category), version=1)
    ticket = TicketFacts(
        ticket_id="INC-000001",
        category=category,
        host="demo-01",
        host_labels={"env": "demo"},
        enable_auto_remediation=True,
        occurrence_count=1,
    )
    model = ModelOutput(severity=1, confidence=confidence)
    runbook = seeded_runbook(category)
    return policy, decide(ticket, model, policy, runbook, Switches(), stats, NOW)


def test_every_category_has_exactly_one_default_policy():
    categories = [policy["category"] for policy in DEFAULT_POLICIES]
    assert sorted(categories) == sorted(Category.values)
    assert len({policy["name"] for policy in DEFAULT_POLICIES}) == len(DEFAULT_POLICIES)


def test_default_policies_use_the_engines_field_names():
    # version comes from the policy's history, ceilings from the environment's ceilings.
    expected = {f.name for f in fields(PolicySnapshot)} - {"version", "ceilings"} | {"description"}
    for policy in DEFAULT_POLICIES:
        assert set(policy) == expected, policy["name"]
        assert policy["description"]
        assert snapshot(policy).name == policy["name"]


def test_default_policies_become_json_ready_model_fields():
    for policy in DEFAULT_POLICIES:
        fields_ = model_fields(policy)
        json.dumps(fields_)
        assert fields_["allowed_action_types"] == sorted(policy["allowed_action_types"])


def test_no_default_policy_runs_beyond_bounded_autonomy():
    assert all(0 <= policy["autonomy_level"] <= 3 for policy in DEFAULT_POLICIES)


@pytest.mark.parametrize(
    ("category", "min_reliability", "auto_approve"),
    [
        ("cache", 75.0, 85.0),
        ("network", 85.0, 90.0),
        ("storage", 90.0, 95.0),
        ("security", 95.0, None),
    ],
)
def test_the_seed_categories_follow_its_threshold_table(category, min_reliability, auto_approve):
    policy = default_policy(category)
    assert policy["min_reliability_score"] == min_reliability
    assert policy["auto_approve_threshold"] == auto_approve
    assert policy["requires_approval"]


def test_security_and_server_stay_with_people():
    assert default_policy("security")["autonomy_level"] == 1
    assert default_policy("server")["autonomy_level"] == 1


def can_act_alone(policy: dict) -> bool:
    return policy["autonomy_level"] >= 2 or policy["auto_approve_threshold"] is not None


def test_no_seeded_policy_acts_by_itself_below_the_seeds_medium_band():
    # the seed's table: below 60 is "low, manual review required"
    for policy in filter(can_act_alone, DEFAULT_POLICIES):
        assert policy["min_reliability_score"] >= 60.0, policy["name"]
        threshold = policy["auto_approve_threshold"]
        assert threshold is None or threshold >= 60.0, policy["name"]


def test_every_seeded_policy_that_acts_asks_for_three_similar_resolved_tickets():
    acting = [policy for policy in DEFAULT_POLICIES if policy["autonomy_level"] >= 2]
    assert {policy["category"] for policy in acting} >= {"disk", "memory", "cpu", "cache"}
    for policy in acting:
        assert policy["min_similar_tickets"] == 3, policy["name"]


# Three disk tickets of one pattern resolved last week, each rated 5 stars by a person.
EARNED = replace(
    DEMO_FLEET,
    feedback=(FeedbackFact("positive", 5, 7.0),) * 3,
    positive_feedback_rate=1.0,
    category_resolved=3,
    category_total=3,
    similar_resolved_tickets=3,
    pattern=PatternFacts(
        occurrence_count=3,
        positive_feedback_rate=1.0,
        avg_reliability_score=50.0,
        auto_remediation_success_rate=0.0,
        similarity=0.9,
        eligible=False,
        known_good=True,
    ),
)


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.99])
@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_a_fresh_install_sends_its_first_disk_memory_and_cpu_problems_to_people(
    category, confidence
):
    # given a fresh install: default policy, seeded runbook, no feedback, no history
    # when
    _, decision = fresh_decision(category, confidence)

    # then a person approves: reliability is low and nothing similar was resolved yet
    assert decision.outcome == HITL_REQUIRED, decision.reasons
    assert decision.allowed and decision.requires_approval
    assert decision.reliability.overall_score == pytest.approx(
        0.25 * confidence * 100 + 27.5, abs=0.1
    )
    assert decision.reliability.overall_score < 60.0
    assert any("below the policy minimum 60.0" in line for line in decision.reasons)
    assert any(
        f"Only 0 similar resolved tickets; policy {category}-self-healing needs 3" in line
        for line in decision.reasons
    )


@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_after_three_similar_resolved_tickets_the_fourth_heals_by_itself(category):
    # given three tickets of the same pattern resolved, with people's 5-star verdicts
    # when a fourth arrives at confidence 0.9, 0.9 similar to the pattern
    _, decision = fresh_decision(category, 0.9, EARNED)

    # then reliability crosses the seed's medium band and it heals without a person:
    # 0.25 x 90 + 0.30 x 100 + 0.25 x 100 + 0.20 x min(90 x 1.2, 100)
    assert decision.reliability.overall_score == 97.5
    assert decision.outcome == AUTO_HEAL, decision.reasons
    assert decision.executes_automatically


@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_two_similar_resolved_tickets_are_not_yet_enough(category):
    # given only two of the pattern's tickets resolved
    stats = replace(EARNED, similar_resolved_tickets=2)

    # when
    _, decision = fresh_decision(category, 0.99, stats)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert any("Only 2 similar resolved tickets" in line for line in decision.reasons)


@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_a_pattern_people_did_not_like_is_not_a_known_good_one(category):
    # given three resolved tickets of a pattern whose feedback is not positive enough
    stats = replace(
        EARNED,
        pattern=replace(EARNED.pattern, positive_feedback_rate=0.5, known_good=False),
    )

    # when
    _, decision = fresh_decision(category, 0.99, stats)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert any("not yet eligible" in line for line in decision.reasons)


@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_an_earned_category_acts_on_a_one_host_fleet(category):
    # when the whole fleet is the one host with the problem
    _, decision = fresh_decision(category, 0.9, replace(EARNED, hosts_in_scope=1))

    # then a 20% blast radius still lets it heal that one host
    assert decision.outcome == AUTO_HEAL, decision.reasons


@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_a_fresh_install_asks_a_person_when_the_model_is_unsure(category):
    # when
    _, decision = fresh_decision(category, 0.7)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert decision.requires_approval


@pytest.mark.parametrize("category", ["dns", "firewall"])
def test_a_fresh_install_sends_dns_and_firewall_changes_to_people(category):
    # when the model is as sure as it gets
    policy, decision = fresh_decision(category, 1.0)

    # then the seeded runbook waits for two approvers
    assert decision.outcome == HITL_REQUIRED
    assert not decision.executes_automatically
    assert decision.allowed
    assert decision.required_approvals == policy.critical_required_approvals == 2


def test_a_category_with_bad_feedback_goes_back_to_people():
    # given a disk pattern that had earned autonomy, then ten remediations this week that
    # people rated badly, seven of them closed unresolved
    stats = replace(EARNED, feedback=(FeedbackFact("negative", 1, 1.0),) * 10, category_total=10)

    # when
    _, decision = fresh_decision("disk", 0.95, stats)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert any("below the policy minimum 60.0" in line for line in decision.reasons)


SEED_NUMBERS = importlib.import_module("governance.migrations.0022_seed_numbers_in_seeded_policies")


@pytest.mark.django_db
def test_a_fresh_install_holds_the_seeds_numbers():
    from governance.models import Policy

    for name in ("disk-self-healing", "memory-self-healing", "cpu-self-healing"):
        policy = Policy.objects.get(name=name)
        assert (policy.min_reliability_score, policy.min_similar_tickets) == (60.0, 3)
        assert policy.description == default_policy(policy.category)["description"]
    for name in ("cache-remediation", "network-remediation", "storage-remediation"):
        assert Policy.objects.get(name=name).min_similar_tickets == 3


@pytest.mark.django_db
def test_an_upgrade_raises_seeded_policies_as_new_audited_versions_and_keeps_peoples():
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    from governance.audit.state_checks import record_current_states, state_report
    from governance.models import AuditEvent, Policy
    from governance.policies.upgrades import record_migrated_versions

    # given an install from before the seed's numbers: disk as 0004 seeded it (and audited
    # so), and cpu's minimum reliability changed by a person to 50
    for name, reliability in (("disk-self-healing", 45.0), ("cpu-self-healing", 50.0)):
        policy = Policy.objects.get(name=name)
        policy.min_reliability_score, policy.min_similar_tickets = reliability, 0
        policy._change_reason = "as it was before the upgrade"
        policy.save()
    record_current_states(reason="the install before the upgrade")
    disk = Policy.objects.get(name="disk-self-healing")
    versions = disk.history.count()

    # when migrate runs the data migration, then its post-migrate step
    migrated = MigrationLoader(connection).project_state(
        ("governance", "0022_seed_numbers_in_seeded_policies")
    )
    SEED_NUMBERS.raise_seeded(migrated.apps, None)
    recorded = record_migrated_versions()

    # then disk is raised as a new version, audited in the system's name with the reason
    disk.refresh_from_db()
    assert (disk.min_reliability_score, disk.min_similar_tickets) == (60.0, 3)
    assert disk.history.count() == versions + 1
    assert recorded == 1
    change = AuditEvent.objects.filter(action="policy.changed").order_by("-sequence").first()
    assert change.actor == "system" and change.object_id == str(disk.pk)
    assert change.data["values"]["min_reliability_score"] == {"from": 45.0, "to": 60.0}
    assert "medium band" in change.data["reason"]
    # cpu keeps the person's numbers, and the audit's state check finds nothing amiss
    cpu = Policy.objects.get(name="cpu-self-healing")
    assert (cpu.min_reliability_score, cpu.min_similar_tickets) == (50.0, 0)
    assert state_report() == []
    # and running it again records nothing more
    assert record_migrated_versions() == 0
