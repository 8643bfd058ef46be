"""The decision engine: the seed's eight steps with PHASE-65's rules, one behaviour per test.

Plain values, no database: each test starts from a disk problem the engine heals
by itself and changes the one fact it is about.
"""

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from governance.rules.engine import decide
from governance.rules.facts import (
    AUTO_HEAL,
    HITL_REQUIRED,
    NO_ACTION,
    Decision,
    ModelOutput,
    PolicySnapshot,
    RunbookFacts,
    Statistics,
    Switches,
    TicketFacts,
)
from scoring.reliability import FeedbackFact, PatternFacts, ReliabilityInputs, reliability_score

NOW = datetime(2025, 3, 12, 14, 30, tzinfo=UTC)  # a Wednesday afternoon

TICKET = TicketFacts(
    ticket_id="INC-000001",
    category="disk",
    host="web-01",
    host_labels={"env": "prod"},
    enable_auto_remediation=True,
    occurrence_count=1,
)
CONFIDENT = ModelOutput(severity=1, confidence=0.95, explanation=(("disk_usage", 0.7),))
SELF_HEALING = PolicySnapshot(
    name="disk-self-healing",
    category="disk",
    version=7,
    autonomy_level=3,
    min_confidence_score=0.8,
    min_reliability_score=45.0,
    requires_approval=False,
    blast_radius_max_percent=20.0,
)
CLEAN_TEMP = RunbookFacts(
    name="clean-temp-and-rotate-logs",
    action_type="safe_write",
    system="linux",
    reversible=True,
    has_rollback_plan=True,
    commands=("find /tmp -mtime +7 -exec mv {} /var/lib/warden/quarantine/ ;",),
)
FLEET = Statistics(hosts_in_scope=20)
# Everything a category can have earned: reliability 100.
PROVEN = replace(
    FLEET,
    feedback=(FeedbackFact("positive", 5, 1.0),) * 10,
    positive_feedback_rate=1.0,
    category_resolved=40,
    category_total=40,
    similar_resolved_tickets=40,
    pattern=PatternFacts(
        occurrence_count=30,
        positive_feedback_rate=1.0,
        avg_reliability_score=95.0,
        auto_remediation_success_rate=1.0,
        similarity=1.0,
        eligible=True,
    ),
)


def decide_with(
    ticket: TicketFacts = TICKET,
    model: ModelOutput = CONFIDENT,
    policy: PolicySnapshot | None = SELF_HEALING,
    runbook: RunbookFacts | None = CLEAN_TEMP,
    switches: Switches = Switches(),  # noqa: B008 - frozen, shared safely
    stats: Statistics = FLEET,
    now: datetime = NOW,
) -> Decision:
    return decide(ticket, model, policy, runbook, switches, stats, now)


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


def mentions(decision: Decision, text: str) -> bool:
    return any(text in line for line in decision.reasons)


def test_a_confident_safe_problem_heals_itself():
    # given the starting point: a confident disk problem under a self-healing policy
    # when
    decision = decide_with()

    # then
    assert decision.outcome == AUTO_HEAL
    assert decision.executes_automatically
    assert (decision.allowed, decision.requires_approval, decision.required_approvals) == (
        True,
        False,
        0,
    )
    assert decision.safety_checks["all_passed"]
    assert (decision.action_type, decision.risk_level) == ("safe_write", "medium")
    assert (decision.policy_name, decision.policy_version) == ("disk-self-healing", 7)
    assert decision.reasons[-1] == (
        "Decision: auto-heal [AUTO_HEAL]: run clean-temp-and-rotate-logs on web-01 automatically; "
        "a supervisor can override."
    )


def test_the_reliability_on_the_decision_is_the_four_factor_score():
    # given a category with a history
    stats = replace(FLEET, feedback=(FeedbackFact("negative", 2, 3.0),), category_resolved=3)
    stats = replace(stats, category_total=4)

    # when
    decision = decide_with(stats=stats)

    # then
    expected = reliability_score(ReliabilityInputs(0.95, stats.feedback, 3, 4, None))
    assert decision.reliability == expected
    assert mentions(decision, f"Reliability {expected.overall_score:.1f} (")


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"policy": None},
        {"runbook": None},
        {"ticket": replace(TICKET, enable_auto_remediation=False)},
        {"switches": Switches(("all automation paused by alice: freeze",))},
        {"model": ModelOutput(severity=0, confidence=0.3)},
    ],
    ids=["plain", "no-policy", "no-runbook", "opted-out", "paused", "unsure"],
)
def test_a_model_no_action_stays_no_action(change):
    # given the model sees nothing to fix, whatever else is true
    change = {"model": ModelOutput(severity=0, confidence=0.97), **change}

    # when
    decision = decide_with(**change)

    # then
    assert decision.outcome == NO_ACTION
    assert not decision.allowed
    assert (decision.requires_approval, decision.required_approvals) == (False, 0)
    assert decision.reasons[-1] == "Decision: no action [NO_ACTION]: nothing to do."


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        ({"affects_billing": True}, "affects billing"),
        ({"data_integrity": True}, "data integrity"),
        ({"customer_impact_minutes": 45.0}, "exceeds the 30-minute SLA"),
        ({"security_severity": "high"}, "security severity is high"),
        ({"security_severity": "critical"}, "security severity is critical"),
    ],
)
def test_escalation_rules_raise_no_action_to_a_person(facts, why):
    # given the model sees nothing to fix, but a PHASE-65 escalation rule applies
    policy = replace(SELF_HEALING, customer_impact_sla_minutes=30.0)
    ticket = replace(TICKET, **facts)

    # when
    decision = decide_with(ticket=ticket, model=ModelOutput(0, 0.99), policy=policy)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert decision.model_outcome == NO_ACTION
    assert mentions(decision, why)
    assert "raised from the model's no action" in decision.reasons[-1]


@pytest.mark.parametrize(
    ("facts", "sla"),
    [
        ({"security_severity": "medium"}, 30.0),
        ({"security_severity": "low"}, 30.0),
        ({"customer_impact_minutes": 30.0}, 30.0),  # at the SLA, not beyond it
        ({"customer_impact_minutes": 500.0}, None),  # no SLA defined
    ],
)
def test_below_the_escalation_rules_no_action_stays_no_action(facts, sla):
    # given
    policy = replace(SELF_HEALING, customer_impact_sla_minutes=sla)

    # when
    decision = decide_with(
        ticket=replace(TICKET, **facts), model=ModelOutput(0, 0.99), policy=policy
    )

    # then
    assert decision.outcome == NO_ACTION


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        ({"affects_billing": True}, "affects billing"),
        ({"security_severity": "high"}, "security severity is high"),
        ({"security_severity": "severe"}, "security severity is severe"),  # unknown reads high
    ],
)
def test_escalation_rules_stop_an_auto_heal(facts, why):
    # when
    decision = decide_with(ticket=replace(TICKET, **facts))

    # then
    assert decision.outcome == HITL_REQUIRED
    assert decision.requires_approval
    assert mentions(decision, why)


def test_a_model_hitl_stays_hitl_even_when_everything_allows_healing():
    # given the model asks for a person, and the category has earned full trust
    # when
    decision = decide_with(model=ModelOutput(2, 0.99), stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert (decision.requires_approval, decision.required_approvals) == (True, 1)
    assert mentions(decision, "The model asks for a person")


def test_a_ticket_without_auto_remediation_goes_to_a_person():
    # when
    decision = decide_with(ticket=replace(TICKET, enable_auto_remediation=False), stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert (decision.allowed, decision.requires_approval) == (True, True)
    assert mentions(decision, "Auto-remediation is not enabled for this ticket")


@pytest.mark.parametrize("policy", [None, replace(SELF_HEALING, enabled=False)])
def test_no_enabled_policy_sends_the_ticket_to_a_person(policy):
    # when
    decision = decide_with(policy=policy, stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert decision.requires_approval
    assert mentions(decision, "No enabled policy for category disk")
    assert (decision.policy_name, decision.policy_version) == ("", None)


def test_without_a_policy_the_default_limits_still_forbid_dangerous_commands():
    # given no policy and a runbook that shuts the host down
    runbook = replace(CLEAN_TEMP, commands=("shutdown -h now",))

    # when
    decision = decide_with(policy=None, runbook=runbook)

    # then nothing may run; a person handles it by hand
    assert decision.outcome == HITL_REQUIRED
    assert not decision.allowed
    assert mentions(decision, "forbidden command 'shutdown'")


def test_no_runbook_means_manual_handling():
    # when
    decision = decide_with(runbook=None)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert not decision.allowed
    assert (decision.requires_approval, decision.required_approvals) == (False, 0)
    assert mentions(decision, "No runbook: manual handling.")
    assert decision.reasons[-1].endswith("a person handles the ticket by hand.")


@pytest.mark.parametrize(
    ("action_type", "risk"),
    [("read_only", "low"), ("safe_write", "medium"), ("critical_write", "high")],
)
def test_the_risk_level_follows_the_action_type(action_type, risk):
    # when
    decision = decide_with(runbook=replace(CLEAN_TEMP, action_type=action_type))

    # then
    assert decision.risk_level == risk
    assert decision.action_type == action_type


@pytest.mark.parametrize(
    ("policy", "runbook", "why"),
    [
        (
            SELF_HEALING,
            replace(CLEAN_TEMP, commands=("logrotate -f x", "SHUTDOWN -r now")),
            "forbidden command 'shutdown'",
        ),
        (
            replace(SELF_HEALING, forbidden_commands=("rm -rf",)),
            replace(CLEAN_TEMP, commands=("rm -rf /var/tmp/cache",)),
            "forbidden command 'rm -rf'",
        ),
        (
            replace(SELF_HEALING, allowed_systems=frozenset({"linux"})),
            replace(CLEAN_TEMP, system="windows"),
            "acts on 'windows'",
        ),
        (SELF_HEALING, replace(CLEAN_TEMP, has_rollback_plan=False), "no rollback plan"),
    ],
    ids=["forbidden-command", "forbidden-phrase", "system", "rollback-plan"],
)
def test_a_runbook_past_a_hard_limit_may_not_run_even_with_approval(policy, runbook, why):
    # when
    decision = decide_with(policy=policy, runbook=runbook, stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert not decision.allowed
    assert (decision.requires_approval, decision.required_approvals) == (False, 0)
    assert mentions(decision, why)


@pytest.mark.parametrize(
    ("command", "forbidden"),
    [
        ("find /tmp -mtime +7 -delete", True),
        ("Delete-Item C:\\temp", True),
        ("echo undeleted", False),
        ("logrotate --reformatted", False),
    ],
)
def test_forbidden_commands_match_whole_words(command, forbidden):
    # when
    decision = decide_with(runbook=replace(CLEAN_TEMP, commands=(command,)))

    # then
    assert decision.allowed is not forbidden


def test_no_rollback_plan_is_fine_when_the_policy_does_not_ask_for_one():
    # when
    decision = decide_with(
        policy=replace(SELF_HEALING, requires_rollback_plan=False),
        runbook=replace(CLEAN_TEMP, has_rollback_plan=False),
    )

    # then
    assert decision.outcome == AUTO_HEAL


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            {"policy": replace(SELF_HEALING, allowed_action_types=frozenset({"read_only"}))},
            "does not run safe write [safe_write] actions automatically",
        ),
        (
            {"model": ModelOutput(1, 0.75)},
            "The model's probability for auto-heal, 75%, is below the policy minimum 80%",
        ),
        (
            {"policy": replace(SELF_HEALING, min_reliability_score=60.0)},
            "Reliability 51.2 is below the policy minimum 60.0",
        ),
        (
            {
                "model": ModelOutput(1, 0.55),
                "policy": replace(SELF_HEALING, min_confidence_score=0),
            },
            "Escalation: the model's probability for auto-heal, 55%, is below 60%",
        ),
        (
            {"policy": replace(SELF_HEALING, min_similar_tickets=5)},
            "Only 0 similar resolved tickets; policy disk-self-healing needs 5",
        ),
        (
            {"policy": replace(SELF_HEALING, min_positive_feedback_rate=0.8)},
            "No feedback yet",
        ),
        (
            {
                "policy": replace(SELF_HEALING, min_positive_feedback_rate=0.8),
                "stats": replace(FLEET, positive_feedback_rate=0.5),
            },
            "Positive feedback rate 50.0% is below the policy minimum 80.0%",
        ),
        (
            {
                "policy": replace(SELF_HEALING, min_similar_tickets=1),
                "stats": replace(
                    PROVEN, pattern=replace(PROVEN.pattern, eligible=False, occurrence_count=4)
                ),
            },
            "matches a known pattern (4 occurrences, 100% positive) not yet eligible",
        ),
    ],
    ids=[
        "action-type",
        "confidence",
        "reliability",
        "phase-65-confidence",
        "similar-tickets",
        "no-feedback",
        "feedback-rate",
        "pattern-not-eligible",
    ],
)
def test_a_missed_threshold_sends_the_ticket_to_a_person(change, why):
    # when
    decision = decide_with(**change)

    # then the runbook still may run, once a person approves it
    assert decision.outcome == HITL_REQUIRED
    assert (decision.allowed, decision.requires_approval, decision.required_approvals) == (
        True,
        True,
        1,
    )
    assert mentions(decision, why), decision.reasons


def test_no_feedback_is_not_below_a_zero_minimum():
    # when
    decision = decide_with(policy=replace(SELF_HEALING, min_positive_feedback_rate=0.0))

    # then
    assert decision.outcome == AUTO_HEAL


def test_a_pattern_that_is_not_eligible_only_matters_when_the_policy_asks_for_history():
    # given an ineligible pattern and a policy that needs no similar tickets
    stats = replace(PROVEN, pattern=replace(PROVEN.pattern, eligible=False))

    # when
    decision = decide_with(stats=stats)

    # then
    assert decision.outcome == AUTO_HEAL


@pytest.mark.parametrize(
    "runbook",
    [
        replace(CLEAN_TEMP, action_type="critical_write"),
        replace(CLEAN_TEMP, reversible=False),
        replace(CLEAN_TEMP, touches=frozenset({"customer_data_deletion"})),
        replace(CLEAN_TEMP, action_type="format_everything"),  # unknown reads critical
    ],
    ids=["critical-write", "irreversible", "forbidden-touch", "unknown-type"],
)
def test_critical_write_always_needs_two_approvals(runbook):
    # given the most permissive policy and a fully proven category
    policy = replace(
        SELF_HEALING,
        allowed_action_types=frozenset({"read_only", "safe_write", "critical_write"}),
        auto_approve_threshold=0.0,
    )

    # when
    decision = decide_with(model=ModelOutput(1, 1.0), policy=policy, runbook=runbook, stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert not decision.executes_automatically
    assert (decision.requires_approval, decision.required_approvals) == (True, 2)
    assert mentions(decision, "it is never automatic")


def test_critical_approvals_follow_the_policy():
    # when
    decision = decide_with(
        policy=replace(SELF_HEALING, critical_required_approvals=3),
        runbook=replace(CLEAN_TEMP, action_type="critical_write"),
    )

    # then
    assert decision.required_approvals == 3
    assert decision.reasons[-1].endswith("waits for 3 approvals.")


def test_a_critical_action_never_needs_fewer_approvals_than_a_safe_one():
    # when
    decision = decide_with(
        policy=replace(SELF_HEALING, required_approvals=3, critical_required_approvals=2),
        runbook=replace(CLEAN_TEMP, reversible=False),
    )

    # then
    assert decision.required_approvals == 3


def test_the_forbidden_list_reads_as_words():
    # when
    decision = decide_with(runbook=replace(CLEAN_TEMP, touches=frozenset({"authentication"})))

    # then
    assert mentions(decision, "is on the forbidden list (disables authentication)")


@pytest.mark.parametrize(("level", "label"), [(0, "L0 (manual)"), (1, "L1 (assisted")])
def test_manual_and_assisted_levels_always_ask_a_person(level, label):
    # when
    decision = decide_with(policy=replace(SELF_HEALING, autonomy_level=level), stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert (decision.requires_approval, decision.required_approvals) == (True, 1)
    assert mentions(decision, f"Autonomy {label}")


def test_an_out_of_range_autonomy_level_asks_a_person():
    # when L4, refused by validation, reaches the engine anyway
    decision = decide_with(policy=replace(SELF_HEALING, autonomy_level=4), stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert mentions(decision, "L4 (not allowed)")


@pytest.mark.parametrize("level", [2, 3])
def test_acting_levels_heal_and_say_who_is_told(level):
    # when
    decision = decide_with(policy=replace(SELF_HEALING, autonomy_level=level))

    # then
    assert decision.outcome == AUTO_HEAL
    told = "people are notified" if level == 2 else "a supervisor can override"
    assert decision.reasons[-1].endswith(f"{told}.")


@pytest.mark.parametrize(
    "pause",
    [
        "all automation paused by alice: change freeze",
        "category disk paused by bob: disk vendor bug",
        "host web-01 paused by alice: hardware check",
    ],
)
def test_paused_category_never_auto_heals(pause):
    # when
    decision = decide_with(switches=Switches((pause,)), stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert not decision.executes_automatically
    assert decision.requires_approval
    assert mentions(decision, pause[0].upper() + pause[1:] + ".")


def test_approval_policy_without_an_auto_approve_threshold_always_asks():
    # when
    policy = replace(SELF_HEALING, requires_approval=True, auto_approve_threshold=None)
    decision = decide_with(policy=policy, stats=PROVEN)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert mentions(decision, "requires approval and never auto-approves")


def test_reliability_below_the_auto_approve_threshold_asks_for_approval():
    # given a fresh category (reliability 51.2) under a policy auto-approving from 90
    policy = replace(SELF_HEALING, requires_approval=True, auto_approve_threshold=90.0)

    # when
    decision = decide_with(policy=policy)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert (decision.requires_approval, decision.required_approvals) == (True, 1)
    assert mentions(decision, "reliability 51.2 is below its auto-approve threshold 90.0")


def test_reliability_at_the_auto_approve_threshold_is_auto_approved():
    # given a proven category (reliability 98.8) under a policy auto-approving from 98.8
    policy = replace(SELF_HEALING, requires_approval=True, auto_approve_threshold=98.8)

    # when
    decision = decide_with(policy=policy, stats=PROVEN)

    # then
    assert decision.outcome == AUTO_HEAL
    assert decision.required_approvals == 0
    assert mentions(decision, "Auto-approved: reliability 98.8 >= 98.8.")


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"stats": replace(FLEET, actions_last_hour=10)}, "rate_limit_ok"),
        ({"stats": replace(FLEET, hosts_under_remediation=4)}, "blast_radius_ok"),
        (
            {
                "policy": replace(SELF_HEALING, blast_radius_max_hosts=2),
                "stats": replace(FLEET, hosts_under_remediation=2),
            },
            "blast_radius_ok",
        ),
        (
            {"policy": replace(SELF_HEALING, allowed_days=frozenset({"saturday"}))},
            "time_window_ok",
        ),
    ],
    ids=["rate-limit", "blast-percent", "blast-hosts", "time-window"],
)
def test_a_failed_safety_check_sends_the_ticket_to_a_person(change, check):
    # when
    decision = decide_with(**change)

    # then
    assert decision.outcome == HITL_REQUIRED
    assert decision.requires_approval
    assert decision.safety_checks[check] is False
    assert decision.safety_checks["all_passed"] is False
    assert sum(not passed for passed in decision.safety_checks.values()) == 2  # it, and all


@pytest.mark.parametrize(
    ("change", "check", "why"),
    [
        (
            {
                "policy": replace(SELF_HEALING, requires_backup=True),
                "stats": replace(FLEET, backup_available=False),
            },
            "backup_available",
            "No backup of the host is available",
        ),
        (
            {"stats": replace(FLEET, system_healthy=False)},
            "system_healthy",
            "The host is not healthy enough",
        ),
    ],
    ids=["backup", "health"],
)
def test_without_a_required_backup_or_on_an_unhealthy_host_nothing_may_run(change, check, why):
    # when
    decision = decide_with(**change)

    # then a person handles it by hand: there is nothing to approve
    assert decision.outcome == HITL_REQUIRED
    assert not decision.allowed
    assert not decision.requires_approval
    assert decision.safety_checks[check] is False
    assert mentions(decision, why)
    assert mentions(decision, "may not run, even with approval")


@pytest.mark.parametrize(
    "stats",
    [
        replace(FLEET, actions_last_hour=9),
        replace(FLEET, backup_available=False),  # the policy does not require a backup
        replace(FLEET, hosts_under_remediation=3),  # 4 of 20 is 20%
        replace(FLEET, hosts_under_remediation=4, host_under_remediation=True),  # no new host
        replace(FLEET, hosts_in_scope=3),  # a percentage never rounds below one host
    ],
    ids=["under-rate-limit", "backup-not-required", "at-blast-limit", "same-host", "small-fleet"],
)
def test_safety_checks_at_their_limits_still_pass(stats):
    # when
    decision = decide_with(stats=stats)

    # then
    assert decision.outcome == AUTO_HEAL
    assert all(decision.safety_checks.values())


def test_a_small_fleet_still_takes_one_host_at_a_time():
    # given one host of three already under remediation, under a 20% limit
    stats = replace(FLEET, hosts_in_scope=3, hosts_under_remediation=1)

    # when
    decision = decide_with(stats=stats)

    # then
    assert decision.safety_checks["blast_radius_ok"] is False
    assert mentions(decision, "put 2 of 3 hosts under remediation at once")


OVERNIGHT = replace(
    SELF_HEALING, allowed_hours_start=22, allowed_hours_end=6, timezone="Europe/Paris"
)


@pytest.mark.parametrize(
    ("hour", "minute", "inside"),
    [(22, 0, True), (23, 0, True), (0, 30, True), (5, 59, True), (6, 0, False), (21, 59, False)],
)
def test_window_across_midnight_covers_both_sides(hour, minute, inside):
    # given a 22:00-06:00 window in Paris
    now = local("Europe/Paris", 2025, 3, 12, hour, minute)

    # when
    decision = decide_with(policy=OVERNIGHT, now=now)

    # then
    assert decision.safety_checks["time_window_ok"] is inside
    assert (decision.outcome == AUTO_HEAL) is inside


@pytest.mark.parametrize(
    ("day", "hour", "inside"),
    [
        (14, 23, True),  # Friday night: the window starts on Friday
        (15, 3, True),  # Saturday early morning: still Friday's window
        (14, 3, False),  # Friday early morning: Thursday's window
        (15, 23, False),  # Saturday night: Saturday's window
    ],
)
def test_window_across_midnight_counts_the_day_it_started(day, hour, inside):
    # given a Friday-only 22:00-06:00 window in Paris
    policy = replace(OVERNIGHT, allowed_days=frozenset({"friday"}))

    # when
    decision = decide_with(policy=policy, now=local("Europe/Paris", 2025, 3, day, hour))

    # then
    assert decision.safety_checks["time_window_ok"] is inside


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (datetime(2025, 3, 12, 20, 59, tzinfo=UTC), False),  # 21:59 in Paris (UTC+1)
        (datetime(2025, 3, 12, 21, 0, tzinfo=UTC), True),  # 22:00
        (datetime(2025, 3, 12, 23, 30, tzinfo=UTC), True),  # 00:30 the next day
        (datetime(2025, 3, 13, 4, 59, tzinfo=UTC), True),  # 05:59
        (datetime(2025, 3, 13, 5, 0, tzinfo=UTC), False),  # 06:00
        # The night the clocks go forward (2025-03-30): Paris is UTC+2 by morning.
        (datetime(2025, 3, 30, 3, 59, tzinfo=UTC), True),  # 05:59 summer time
        (datetime(2025, 3, 30, 4, 0, tzinfo=UTC), False),  # 06:00 summer time
    ],
)
def test_window_across_midnight_reads_a_utc_instant_in_the_policy_time_zone(now, inside):
    # given a 22:00-06:00 window in Paris, and the UTC clock the server keeps

    # when
    decision = decide_with(policy=OVERNIGHT, now=now)

    # then
    assert decision.safety_checks["time_window_ok"] is inside
    assert (decision.outcome == AUTO_HEAL) is inside


@pytest.mark.parametrize(("utc_hour", "inside"), [(12, False), (13, True), (20, True), (21, False)])
def test_window_is_read_in_the_policy_time_zone(utc_hour, inside):
    # given 09:00-17:00 in New York, 13:00-21:00 UTC on 2025-03-12 (daylight saving time)
    policy = replace(
        SELF_HEALING, allowed_hours_start=9, allowed_hours_end=17, timezone="America/New_York"
    )

    # when
    decision = decide_with(policy=policy, now=datetime(2025, 3, 12, utc_hour, tzinfo=UTC))

    # then
    assert decision.safety_checks["time_window_ok"] is inside


def test_time_window_line_says_where_and_when():
    # when
    decision = decide_with(policy=OVERNIGHT, now=local("Europe/Paris", 2025, 3, 12, 14, 5))

    # then
    assert mentions(
        decision,
        "Outside policy disk-self-healing's time window (22:00-06:00, every day, "
        "Europe/Paris): it is wednesday 14:05 there.",
    )


@pytest.mark.parametrize("hour", [0, 8, 23])
def test_equal_start_and_end_hours_mean_the_whole_day(hour):
    # given
    policy = replace(SELF_HEALING, allowed_hours_start=8, allowed_hours_end=8)

    # when
    decision = decide_with(policy=policy, now=datetime(2025, 3, 12, hour, tzinfo=UTC))

    # then
    assert decision.safety_checks["time_window_ok"]


def test_an_unknown_time_zone_is_outside_every_window():
    # when
    decision = decide_with(policy=replace(SELF_HEALING, timezone="Mars/Olympus_Mons"))

    # then
    assert decision.safety_checks["time_window_ok"] is False
    assert mentions(decision, "Unknown time zone 'Mars/Olympus_Mons'")


def test_shadow_mode_decides_like_enforce_but_never_executes():
    # given the same ticket under the same policy, enforcing and in shadow mode
    # when
    enforced = decide_with()
    shadowed = decide_with(policy=replace(SELF_HEALING, mode="shadow"))

    # then the decision is the same, recorded only
    assert shadowed.outcome == enforced.outcome == AUTO_HEAL
    assert (shadowed.allowed, shadowed.required_approvals) == (enforced.allowed, 0)
    assert shadowed.shadow and not enforced.shadow
    assert not shadowed.executes_automatically
    assert mentions(shadowed, "in shadow mode: this decision is recorded and nothing is executed")
    assert shadowed.reasons[-1].endswith("(shadow mode: not executed).")


def test_reasons_read_in_flow_order_and_end_with_the_conclusion():
    # given a ticket that several steps would each send to a person
    policy = replace(OVERNIGHT, min_reliability_score=60.0, min_similar_tickets=2)
    stats = replace(FLEET, actions_last_hour=12)

    # when
    decision = decide_with(
        policy=policy,
        stats=stats,
        switches=Switches(("category disk paused by bob: vendor bug",)),
        now=local("Europe/Paris", 2025, 3, 12, 12),
    )

    # then each step's line comes after the previous step's
    steps = [
        "The model picks auto-heal [AUTO_HEAL] (probability 95% for that class; the other "
        "classes' were not recorded), mostly from disk usage.",
        "Policy disk-self-healing (version 7) applies at L3",
        "Runbook clean-temp-and-rotate-logs is a safe write [safe_write] action: medium risk.",
        "Reliability 51.2 (low)",
        "Reliability 51.2 is below the policy minimum 60.0.",
        "Outside policy disk-self-healing's time window",
        "Rate limit reached: 12 actions in the last hour",
        "Only 0 similar resolved tickets",
        "Category disk paused by bob: vendor bug.",
        "Decision: needs a person [HITL_REQUIRED], raised from the model's auto-heal: "
        "runbook clean-temp-and-rotate-logs waits for 1 approval.",
    ]
    positions = [
        next(i for i, line in enumerate(decision.reasons) if line.startswith(step))
        for step in steps
    ]
    assert positions == sorted(positions)
    assert positions[-1] == len(decision.reasons) - 1


def test_the_same_inputs_give_an_equal_decision():
    # given
    stats = replace(PROVEN, actions_last_hour=3)

    # when
    first = decide_with(stats=stats, policy=OVERNIGHT)
    second = decide_with(stats=replace(stats), policy=replace(OVERNIGHT))

    # then
    assert first == second


def test_an_unknown_model_severity_is_read_as_needing_a_person():
    # when
    decision = decide_with(model=ModelOutput(severity=7, confidence=0.99))

    # then
    assert decision.outcome == HITL_REQUIRED
    assert decision.model_outcome == HITL_REQUIRED
    assert mentions(decision, "unknown severity 7")


def test_the_model_statement_names_the_rule_when_the_class_is_not_the_likeliest():
    # given the class of least expected cost, less probable than the class it beat
    model = ModelOutput(
        severity=2,
        confidence=0.03,
        explanation=(("cpu_usage", 0.02), ("memory_usage", 0.01)),
        probabilities=(0.02, 0.95, 0.03),
    )

    # when
    decision = decide_with(model=model)

    # then the first line gives every probability and the rule, never a "confidence"
    assert decision.reasons[0] == (
        "The model picks needs a person [HITL_REQUIRED], the class of least expected cost "
        "(probabilities: no action 2%, auto-heal 95%, needs a person 3%), mostly from CPU "
        "usage and memory usage."
    )
    assert "confidence" not in decision.reasons[0].lower()
    assert decision.outcome == HITL_REQUIRED


def test_the_model_statement_says_when_its_class_is_also_the_likeliest():
    model = replace(CONFIDENT, probabilities=(0.03, 0.95, 0.02))

    decision = decide_with(model=model)

    assert decision.reasons[0].startswith(
        "The model picks auto-heal [AUTO_HEAL], the most probable class and the class of least "
        "expected cost (probabilities: no action 3%, auto-heal 95%, needs a person 2%)"
    )


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware datetime"):
        decide_with(now=datetime(2025, 3, 12, 14, 30))


def test_a_labelled_blast_radius_does_not_hold_hosts_outside_the_label():
    # given a canary-only limit already reached by the canary hosts
    policy = replace(SELF_HEALING, blast_radius_max_hosts=2, blast_radius_label="env=canary")
    full = replace(FLEET, hosts_in_scope=3, hosts_under_remediation=2)

    # when a production host and a canary host each have a problem
    production = decide_with(policy=policy, stats=replace(full, host_in_scope=False))
    canary = decide_with(policy=policy, stats=full)

    # then only the canary host is held by the limit
    assert production.outcome == AUTO_HEAL
    assert production.safety_checks["blast_radius_ok"] is True
    assert canary.outcome == HITL_REQUIRED
    assert mentions(canary, "put 3 of 3 hosts labelled env=canary under remediation")
