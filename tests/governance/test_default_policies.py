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
from scoring.reliability import FeedbackFact

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


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.99])
@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_a_fresh_install_heals_confident_disk_memory_and_cpu_problems(category, confidence):
    # given a fresh install: default policy, seeded runbook, no feedback, no history
    # when
    _, decision = fresh_decision(category, confidence)

    # then
    assert decision.outcome == AUTO_HEAL, decision.reasons
    assert decision.executes_automatically


@pytest.mark.parametrize("category", ["disk", "memory", "cpu"])
def test_a_fresh_install_acts_on_a_one_host_fleet(category):
    # when the whole fleet is the one host with the problem
    _, decision = fresh_decision(category, 0.9, Statistics(hosts_in_scope=1))

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
    # given disk remediations people rated badly last week
    stats = replace(DEMO_FLEET, feedback=(FeedbackFact("negative", 1, 7.0),) * 3)

    # when
    _, decision = fresh_decision("disk", 0.95, stats)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert any("below the policy minimum 45.0" in line for line in decision.reasons)
