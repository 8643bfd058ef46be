"""Invariants of the decision engine over generated tickets, models, policies and histories.

The strategies lean towards facts that let Warden act (opted-in tickets, enabled
policies, safe runbooks, a quiet fleet) so that about a third of the examples
heal by themselves and the properties about automatic decisions bite;
test_the_strategies_reach_every_outcome checks that they do.
"""

import copy
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from governance.rules.engine import decide
from governance.rules.facts import (
    AUTO_HEAL,
    CAUTION,
    HITL_REQUIRED,
    NO_ACTION,
    OUTCOME_BY_SEVERITY,
    ModelOutput,
    PolicySnapshot,
    RunbookFacts,
    Statistics,
    Switches,
    TicketFacts,
)
from remediation.choices import ActionType, Category, ForbiddenTouch
from scoring.reliability import FeedbackFact, PatternFacts

# Enough to meet every branch in a few seconds; no example database left in the tree.
EXAMPLES = settings(max_examples=100, deadline=None, database=None)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
COMMANDS = (
    "systemctl restart app.service",
    "logrotate --force /etc/logrotate.conf",
    "find /tmp -mtime +7 -delete",
    "shutdown -r now",
    "nft -f /etc/warden/change.nft",
)
PAUSES = (
    "all automation paused by alice: change freeze",
    "category disk paused by bob: vendor bug",
)


def mostly(value: bool) -> st.SearchStrategy[bool]:
    """`value` four times in five."""
    return st.sampled_from((value, value, value, value, not value))


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


unit = st.floats(0, 1)
score = st.floats(0, 100)

clean_tickets = st.builds(
    TicketFacts,
    ticket_id=st.just("INC-000001"),
    category=st.just("disk"),
    host=st.just("web-01"),
    host_labels=st.just({"env": "prod"}),
    enable_auto_remediation=st.just(True),
    occurrence_count=st.integers(1, 5),
)
any_tickets = st.builds(
    TicketFacts,
    ticket_id=st.just("INC-000001"),
    category=st.sampled_from(Category.values),
    host=st.sampled_from(("web-01", "db-01")),
    host_labels=st.just({"env": "prod"}),
    enable_auto_remediation=st.booleans(),
    occurrence_count=st.integers(1, 50),
    affects_billing=st.booleans(),
    data_integrity=st.booleans(),
    customer_impact_minutes=st.sampled_from((0.0, 15.0, 120.0)),
    security_severity=st.sampled_from(("none", "low", "medium", "high", "critical", "severe")),
)
confident_models = st.builds(
    ModelOutput, severity=st.just(1), confidence=st.sampled_from((0.9, 0.95, 0.99))
)
any_models = st.builds(
    ModelOutput,
    severity=st.sampled_from((0, 0, 1, 2, 3)),
    confidence=unit,
    explanation=st.just((("disk_usage", 0.5),)),
)

safe_runbooks = st.builds(
    RunbookFacts,
    name=st.just("clean-temp"),
    action_type=st.sampled_from(("read_only", "safe_write")),
    system=st.just("linux"),
    reversible=st.just(True),
    has_rollback_plan=st.just(True),
    commands=st.just((COMMANDS[0],)),
)
any_runbooks = st.builds(
    RunbookFacts,
    name=st.just("runbook"),
    action_type=st.sampled_from((*ActionType.values, "mystery")),
    system=st.sampled_from(("linux", "dns", "network")),
    reversible=st.booleans(),
    has_rollback_plan=st.booleans(),
    commands=st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=3).map(tuple),
    touches=st.frozensets(st.sampled_from(ForbiddenTouch.values)),
)

acting_policies = st.builds(
    PolicySnapshot,
    name=st.just("self-healing"),
    category=st.just("disk"),
    version=st.integers(0, 3),
    autonomy_level=st.sampled_from((2, 3)),
    min_confidence_score=st.sampled_from((0.0, 0.8)),
    min_reliability_score=st.sampled_from((0.0, 45.0)),
    requires_approval=st.booleans(),
    auto_approve_threshold=maybe(st.sampled_from((0.0, 50.0, 90.0))),
    mode=st.sampled_from(("enforce", "enforce", "enforce", "shadow")),
)
any_policies = st.builds(
    PolicySnapshot,
    name=st.just("policy"),
    category=st.sampled_from(Category.values),
    version=st.integers(0, 10),
    enabled=mostly(True),
    mode=st.sampled_from(("enforce", "shadow")),
    autonomy_level=st.integers(0, 4),
    min_confidence_score=unit,
    min_reliability_score=score,
    min_similar_tickets=st.integers(0, 5),
    min_positive_feedback_rate=unit,
    allowed_action_types=st.frozensets(st.sampled_from(ActionType.values)),
    allowed_systems=st.frozensets(st.sampled_from(("linux", "dns"))),
    forbidden_commands=st.sampled_from(((), ("delete", "format", "shutdown"), ("RM", "reboot"))),
    allowed_hours_start=maybe(st.integers(0, 23)),
    allowed_hours_end=maybe(st.integers(0, 24)),
    allowed_days=st.frozensets(st.sampled_from(WEEKDAYS)),
    timezone=st.sampled_from(ZONES),
    requires_approval=st.booleans(),
    auto_approve_threshold=maybe(score),
    max_actions_per_hour=st.integers(0, 20),
    requires_rollback_plan=st.booleans(),
    requires_backup=st.booleans(),
    required_approvals=st.integers(1, 3),
    critical_required_approvals=st.integers(1, 3),
    blast_radius_max_hosts=maybe(st.integers(0, 10)),
    blast_radius_max_percent=maybe(st.floats(0, 100)),
    customer_impact_sla_minutes=maybe(st.sampled_from((10.0, 30.0, 60.0))),
    min_auto_confidence_escalation=unit,
)
policies = acting_policies | any_policies
any_switches = st.builds(Switches, active_pauses=st.sampled_from(((), (PAUSES[0],), PAUSES)))
feedback = st.builds(
    FeedbackFact,
    feedback_type=st.sampled_from(("positive", "positive", "negative", "neutral")),
    rating=maybe(st.integers(1, 5)),
    age_days=st.floats(0, 180),
)
patterns = st.builds(
    PatternFacts,
    occurrence_count=st.integers(0, 30),
    positive_feedback_rate=unit,
    avg_reliability_score=score,
    auto_remediation_success_rate=unit,
    similarity=unit,
    eligible=st.booleans(),
)


@st.composite
def any_statistics(draw: st.DrawFn) -> Statistics:
    total = draw(st.integers(0, 50))
    return Statistics(
        actions_last_hour=draw(st.integers(0, 12)),
        hosts_under_remediation=draw(st.integers(0, 5)),
        hosts_in_scope=draw(st.integers(1, 40)),
        host_under_remediation=draw(st.booleans()),
        backup_available=draw(mostly(True)),
        system_healthy=draw(mostly(True)),
        similar_resolved_tickets=draw(st.integers(0, 10)),
        positive_feedback_rate=draw(maybe(unit)),
        feedback=tuple(draw(st.lists(feedback, max_size=6))),
        category_resolved=draw(st.integers(0, total)),
        category_total=total,
        pattern=draw(maybe(patterns)),
    )


moments = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2027, 12, 31),
    timezones=st.sampled_from([UTC, ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")]),
)


# For each argument of decide(): facts Warden acts on, and anything at all. Each
# argument is drawn from the first four times in five, so about a third of the
# examples could heal by themselves and the rest probe every way of not doing so.
ARGUMENTS = {
    "ticket": (clean_tickets, any_tickets),
    "model": (confident_models, any_models),
    "policy": (acting_policies, maybe(any_policies)),
    "runbook": (safe_runbooks, maybe(any_runbooks)),
    "switches": (st.just(Switches()), any_switches),
    "stats": (st.just(Statistics(hosts_in_scope=20)), any_statistics()),
}


@st.composite
def inputs(draw: st.DrawFn, **fixed: st.SearchStrategy) -> dict:
    """Keyword arguments for decide(); `fixed` replaces the strategy of some of them."""
    drawn = {
        name: draw(fixed[name]) if name in fixed else draw(usual if draw(mostly(True)) else wild)
        for name, (usual, wild) in ARGUMENTS.items()
    }
    return {**drawn, "now": draw(moments)}


def is_critical(runbook: RunbookFacts) -> bool:
    return (
        runbook.action_type not in ("read_only", "safe_write")
        or not runbook.reversible
        or bool(runbook.touches)
    )


critical_runbooks = any_runbooks.filter(is_critical)
paused = st.builds(Switches, active_pauses=st.sampled_from(((PAUSES[0],), PAUSES)))
shadow_policies = policies.map(lambda p: PolicySnapshot(**{**vars(p), "mode": "shadow"}))


@EXAMPLES
@given(inputs())
def test_the_engine_is_never_less_cautious_than_the_model(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    model_outcome = OUTCOME_BY_SEVERITY.get(given_inputs["model"].severity, HITL_REQUIRED)
    assert decision.model_outcome == model_outcome
    assert CAUTION[decision.outcome] >= CAUTION[model_outcome]


@EXAMPLES
@given(inputs(runbook=critical_runbooks))
def test_a_critical_irreversible_or_forbidden_action_is_never_automatic(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    assert decision.outcome != AUTO_HEAL
    assert not decision.executes_automatically
    policy = given_inputs["policy"]
    if decision.requires_approval and policy is not None and policy.enabled:
        assert decision.required_approvals >= policy.critical_required_approvals
    elif decision.requires_approval:
        assert decision.required_approvals >= 2  # the default limits without a policy


@EXAMPLES
@given(inputs(switches=paused))
def test_nothing_is_automatic_while_paused(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    assert decision.outcome != AUTO_HEAL
    assert not decision.executes_automatically


@EXAMPLES
@given(inputs(policy=shadow_policies))
def test_nothing_executes_in_shadow_mode(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    assert not decision.executes_automatically
    assert decision.shadow is given_inputs["policy"].enabled


@EXAMPLES
@given(inputs())
def test_the_same_inputs_always_give_the_same_decision(given_inputs):
    # when
    first = decide(**given_inputs)
    second = decide(**copy.deepcopy(given_inputs))

    # then
    assert first == second


@EXAMPLES
@given(inputs())
def test_auto_heal_implies_every_safety_check_passed(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    if decision.outcome == AUTO_HEAL:
        assert decision.safety_checks["all_passed"]
        assert all(decision.safety_checks.values())
        assert decision.allowed
        policy = given_inputs["policy"]
        assert policy is not None and policy.enabled
        assert policy.autonomy_level in (2, 3)
        assert given_inputs["ticket"].enable_auto_remediation
        assert decision.reliability.overall_score >= policy.min_reliability_score


@EXAMPLES
@given(inputs())
def test_approvals_are_counted_only_when_a_person_must_approve(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    if decision.outcome in (AUTO_HEAL, NO_ACTION):
        assert decision.required_approvals == 0
        assert not decision.requires_approval
    assert decision.requires_approval == (decision.outcome == HITL_REQUIRED and decision.allowed)
    assert (decision.required_approvals >= 1) == decision.requires_approval


@EXAMPLES
@given(inputs())
def test_the_last_reason_states_the_conclusion(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    assert decision.reasons[-1].startswith("Decision: ")
    assert f"[{decision.outcome}]" in decision.reasons[-1]
    assert sum(line.startswith("Decision: ") for line in decision.reasons) == 1


@EXAMPLES
@given(inputs())
def test_a_model_no_action_only_moves_on_an_escalation_rule(given_inputs):
    # when
    decision = decide(**given_inputs)

    # then
    ticket, policy = given_inputs["ticket"], given_inputs["policy"]
    sla = policy.customer_impact_sla_minutes if policy is not None and policy.enabled else None
    escalates = (
        ticket.affects_billing
        or ticket.data_integrity
        or (sla is not None and ticket.customer_impact_minutes > sla)
        # high, critical, or a severity the engine does not know (read as critical)
        or ticket.security_severity not in ("none", "low", "medium")
    )
    if decision.model_outcome == NO_ACTION:
        assert decision.outcome == (HITL_REQUIRED if escalates else NO_ACTION)


def test_the_strategies_reach_every_outcome():
    # The properties above are only as good as the cases they see: every outcome, an
    # automatic one included, must come out of the strategies.
    seen: set[tuple[str, bool]] = set()

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(inputs())
    def collect(given_inputs: dict) -> None:
        decision = decide(**given_inputs)
        seen.add((decision.outcome, decision.executes_automatically))

    collect()

    assert {
        (NO_ACTION, False),
        (AUTO_HEAL, True),
        (AUTO_HEAL, False),
        (HITL_REQUIRED, False),
    } <= seen
