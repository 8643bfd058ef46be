"""The seed's global ceilings (AUTO_REMEDIATION_*, PATTERN_*): they tighten every policy,
never loosen one, and a decision they decided says so."""

from dataclasses import replace

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from feedback.models import Pattern
from feedback.patterns import is_eligible
from governance.decisions.dispatch import dispatch_check
from governance.models import Decision
from governance.rules.ceilings import Ceilings, apply_ceilings
from governance.rules.engine import decide
from governance.rules.facts import CAUTION, PolicySnapshot
from remediation.models import Execution
from tests.governance.test_engine_properties import EXAMPLES, inputs, policies
from tests.test_settings import start

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

SELF_HEALING = PolicySnapshot(
    name="disk-self-healing",
    category="disk",
    version=1,
    autonomy_level=3,
    min_reliability_score=45.0,
    requires_approval=False,
    auto_approve_threshold=None,
    max_actions_per_hour=10,
)

any_ceilings = st.builds(
    Ceilings,
    auto_remediation_enabled=st.booleans(),
    require_approval=st.booleans(),
    max_actions_per_hour=st.none() | st.integers(0, 20),
    min_reliability=st.none() | st.floats(0, 100),
    pattern_min_occurrences=st.none() | st.integers(1, 30),
    pattern_min_positive_rate=st.none() | st.floats(0, 1),
)


@EXAMPLES
@given(inputs(policy=policies), any_ceilings)
def test_a_ceiling_never_makes_a_decision_less_cautious(given_inputs, ceilings):
    # given the same facts decided with and without the ceilings
    plain = decide(**given_inputs)
    ceiled = decide(**{**given_inputs, "policy": apply_ceilings(given_inputs["policy"], ceilings)})

    # then the ceilings only ever move it towards people
    assert CAUTION[ceiled.outcome] >= CAUTION[plain.outcome]
    assert plain.executes_automatically or not ceiled.executes_automatically


@EXAMPLES
@given(policies, any_ceilings)
def test_a_ceiling_only_tightens_each_value(policy, ceilings):
    ceiled = apply_ceilings(policy, ceilings)

    assert ceiled.min_reliability_score >= policy.min_reliability_score
    assert ceiled.max_actions_per_hour <= policy.max_actions_per_hour
    assert ceiled.autonomy_level <= policy.autonomy_level
    assert ceiled.requires_approval >= policy.requires_approval
    if not ceilings.auto_remediation_enabled:
        assert ceiled.autonomy_level <= 1
    if ceilings.require_approval:
        assert ceiled.requires_approval and ceiled.auto_approve_threshold is None


def test_no_ceiling_leaves_the_policy_as_it_is():
    assert apply_ceilings(SELF_HEALING, Ceilings()) is SELF_HEALING


def test_a_policy_stricter_than_a_ceiling_keeps_its_values_unnoted():
    strict = replace(SELF_HEALING, min_reliability_score=95.0, max_actions_per_hour=2)
    ceiled = apply_ceilings(strict, Ceilings(min_reliability=85.0, max_actions_per_hour=10))
    assert (ceiled.min_reliability_score, ceiled.max_actions_per_hour) == (95.0, 2)
    assert ceiled.ceilings == ()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AUTO_REMEDIATION_ENABLED", False, "AUTO_REMEDIATION_ENABLED=false"),
        ("AUTO_REMEDIATION_REQUIRE_APPROVAL", True, "AUTO_REMEDIATION_REQUIRE_APPROVAL=true"),
        ("AUTO_REMEDIATION_MIN_RELIABILITY", 95.0, "AUTO_REMEDIATION_MIN_RELIABILITY=95"),
        ("AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR", 0, "AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR=0"),
    ],
)
def test_a_ceiling_sends_what_would_heal_to_people_and_says_so(
    agent, settings, variable, value, says
):
    # given a full disk the default policy heals by itself at L3, under one ceiling
    setattr(settings, variable, value)

    # when the agent reports it
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    # then a person decides, and the decision names the ceiling
    assert result["decision"] == "HITL_REQUIRED"
    decision = Decision.objects.get(ticket__ticket_id=result["ticket_id"])
    assert not decision.requires_approval or decision.allowed
    assert any(says in line for line in decision.reasons), decision.reasons
    assert not Execution.objects.exists()


def test_without_ceilings_the_same_disk_heals_by_itself(agent):
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    assert result["decision"] == "AUTO_HEAL"


def test_an_automatic_action_queued_before_the_ceiling_does_not_start_after_it(agent, settings):
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    assert dispatch_check(execution, timezone.now()).refusals == []

    settings.AUTO_REMEDIATION_ENABLED = False

    [refusal] = dispatch_check(execution, timezone.now()).refusals
    assert "AUTO_REMEDIATION_ENABLED=false" in refusal


def pattern(**counts: int) -> Pattern:
    fields = {
        "occurrence_count": 6,
        "positive_count": 9,
        "negative_count": 1,
        "avg_reliability": 90.0,
        "auto_remediation_attempts": 10,
        "auto_remediation_successes": 10,
    }
    return Pattern(**{**fields, **counts})


def test_pattern_ceilings_raise_eligibility_never_lower_it(settings):
    assert is_eligible(pattern())

    settings.PATTERN_MIN_OCCURRENCES = 10
    assert not is_eligible(pattern())
    settings.PATTERN_MIN_OCCURRENCES = 2  # below the seed's 5: no effect
    assert not is_eligible(pattern(occurrence_count=4))

    settings.PATTERN_MIN_OCCURRENCES = None
    settings.PATTERN_MIN_POSITIVE_RATE = 0.95
    assert not is_eligible(pattern())
    settings.PATTERN_MIN_POSITIVE_RATE = 0.5  # below the seed's 0.85: no effect
    assert not is_eligible(pattern(positive_count=5, negative_count=5))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTO_REMEDIATION_ENABLED": "maybe"}, "AUTO_REMEDIATION_ENABLED must be true or false"),
        ({"AUTO_REMEDIATION_REQUIRE_APPROVAL": "sure"}, "must be true or false"),
        ({"AUTO_REMEDIATION_MIN_RELIABILITY": "150"}, "must be 0 to 100"),
        ({"AUTO_REMEDIATION_MIN_RELIABILITY": "high"}, "must be a number"),
        ({"AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR": "-1"}, "must be at least 0"),
        ({"AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR": "2.5"}, "must be a whole number"),
        ({"PATTERN_MIN_OCCURRENCES": "0"}, "PATTERN_MIN_OCCURRENCES must be at least 1"),
        ({"PATTERN_MIN_POSITIVE_RATE": "85"}, "PATTERN_MIN_POSITIVE_RATE must be 0 to 1"),
        ({"PATTERN_MIN_POSITIVE_RATE": "nan"}, "PATTERN_MIN_POSITIVE_RATE must be 0 to 1"),
    ],
)
def test_a_bad_ceiling_refuses_to_start(tmp_path, env, message):
    result = start(tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_good_ceilings_start(tmp_path):
    result = start(
        tmp_path,
        AUTO_REMEDIATION_ENABLED="false",
        AUTO_REMEDIATION_REQUIRE_APPROVAL="true",
        AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR="10",
        AUTO_REMEDIATION_MIN_RELIABILITY="85.0",
        PATTERN_MIN_OCCURRENCES="5",
        PATTERN_MIN_POSITIVE_RATE="0.85",
    )
    assert result.returncode == 0, result.stderr
