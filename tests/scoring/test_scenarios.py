"""Simulated hosts: problems develop, the right runbook action heals them, rollbacks undo."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.features import Reading
from scoring.scenarios import (
    ACTIONS,
    AUTO_HEAL,
    HEALING_ACTION,
    HITL_REQUIRED,
    NO_ACTION,
    PROBLEM_THRESHOLDS,
    ROLLBACK_OF,
    SCENARIO_METRIC,
    SCENARIOS,
    SimulatedHost,
    label_reading,
)

START = datetime(2025, 3, 1, tzinfo=UTC)
PROBLEMS = [scenario for scenario in SCENARIOS if scenario != "healthy"]
EXPECTED_SEVERITY = {
    "disk_filling": AUTO_HEAL,
    "memory_leak": AUTO_HEAL,
    "cpu_runaway": AUTO_HEAL,
    "dns_latency_spike": HITL_REQUIRED,
    "firewall_change_request": HITL_REQUIRED,
}


def host(scenario: str, seed: int = 7, name: str = "web-01", recur: bool = True) -> SimulatedHost:
    return SimulatedHost(name, scenario, seed, START, interval_seconds=5.0, recur=recur)


def at_problem(reading: Reading, scenario: str) -> bool:
    metric = SCENARIO_METRIC[scenario]
    return getattr(reading, metric) >= PROBLEM_THRESHOLDS[metric]


def run_until_problem(simulated: SimulatedHost, scenario: str, limit: int = 200) -> Reading:
    for _ in range(limit):
        reading = simulated.next_reading()
        if at_problem(reading, scenario):
            return reading
    raise AssertionError(f"{scenario} never reached its problem level in {limit} steps")


def reading(**metrics: float) -> Reading:
    values = {
        "disk_usage": 45.0,
        "memory_usage": 50.0,
        "cpu_usage": 25.0,
        "dns_latency_ms": 18.0,
        "firewall_change_requested": 0,
        **metrics,
    }
    return Reading(host="web-01", taken_at=START, **values)


@pytest.mark.parametrize("scenario", PROBLEMS)
def test_each_scenario_develops_its_problem_from_a_healthy_start(scenario):
    simulated = host(scenario)

    readings = [simulated.next_reading() for _ in range(60)]

    assert label_reading(readings[0]) == NO_ACTION
    first = next(i for i, r in enumerate(readings) if at_problem(r, scenario))
    assert first >= 2, "the problem should develop after a healthy start"
    assert label_reading(readings[first]) == EXPECTED_SEVERITY[scenario]
    # Left alone, a (first, full) episode stays at the problem level.
    assert all(at_problem(r, scenario) for r in readings[first + 3 :])


def test_a_filling_disk_climbs_a_few_points_a_step_to_nearly_full():
    simulated = host("disk_filling", seed=3)

    disk = [simulated.next_reading().disk_usage for _ in range(80)]

    assert disk[0] < 70
    assert max(disk) > 95
    steps = [b - a for a, b in itertools.pairwise(disk) if b - a > 0.5]
    assert steps and max(steps) < 15


@pytest.mark.parametrize("scenario", PROBLEMS)
def test_the_right_action_heals_the_problem(scenario):
    simulated = host(scenario)
    run_until_problem(simulated, scenario)

    output = simulated.apply_action(HEALING_ACTION[scenario])

    assert isinstance(output, str) and "\n" not in output
    after = [simulated.next_reading() for _ in range(15)]
    assert not any(at_problem(r, scenario) for r in after)


def test_cleaning_a_full_disk_brings_it_back_to_40_to_55_percent():
    simulated = host("disk_filling")
    run_until_problem(simulated, "disk_filling")

    simulated.apply_action("clean_temp_and_rotate_logs")

    assert 39.0 <= simulated.next_reading().disk_usage <= 56.0


@pytest.mark.parametrize("scenario", PROBLEMS)
def test_a_rollback_puts_the_problem_back(scenario):
    simulated = host(scenario)
    run_until_problem(simulated, scenario)
    action = HEALING_ACTION[scenario]
    simulated.apply_action(action)
    assert not at_problem(simulated.next_reading(), scenario)

    output = simulated.apply_action(ROLLBACK_OF[action])

    assert output.startswith(ROLLBACK_OF[action])
    assert at_problem(simulated.next_reading(), scenario)
    # A rollback is spent: a second one has nothing left to restore.
    assert "nothing to restore" in simulated.apply_action(ROLLBACK_OF[action])


def test_a_rollback_with_nothing_to_undo_changes_nothing():
    # given twins, one of which is asked to roll back a fix it never had
    asked, twin = host("dns_latency_spike"), host("dns_latency_spike")

    output = asked.apply_action("restore_dns_resolver")

    assert "nothing to restore" in output
    assert [asked.next_reading() for _ in range(30)] == [twin.next_reading() for _ in range(30)]


def test_an_action_for_a_problem_the_host_does_not_have_does_no_harm():
    # given a host whose disk is full
    simulated = host("disk_filling")
    run_until_problem(simulated, "disk_filling")

    # when every other healing action runs on it
    for scenario, action in HEALING_ACTION.items():
        if scenario != "disk_filling":
            simulated.apply_action(action)

    # then nothing else turns into a problem, and the disk is still full
    after = simulated.next_reading()
    assert at_problem(after, "disk_filling")
    assert after.dns_latency_ms < 150 and after.firewall_change_requested == 0
    assert after.memory_usage < 90


def test_healing_actions_on_a_healthy_host_leave_it_healthy():
    simulated = host("healthy", seed=11)
    simulated.next_reading()

    for action in HEALING_ACTION.values():
        simulated.apply_action(action)

    assert all(label_reading(simulated.next_reading()) == NO_ACTION for _ in range(20))


def test_without_recur_a_healed_host_stays_healthy():
    simulated = host("memory_leak", recur=False)
    run_until_problem(simulated, "memory_leak")

    simulated.apply_action("restart_leaking_service")

    assert not any(at_problem(simulated.next_reading(), "memory_leak") for _ in range(300))


def test_with_recur_the_problem_comes_back_after_a_healthy_spell():
    simulated = host("cpu_runaway", recur=True)
    run_until_problem(simulated, "cpu_runaway")
    simulated.apply_action("throttle_runaway_process")

    after = [simulated.next_reading() for _ in range(200)]

    back = [i for i, r in enumerate(after) if at_problem(r, "cpu_runaway")]
    assert back, "the problem never came back"
    assert back[0] >= 15


def test_the_same_arguments_give_the_same_readings_and_actions():
    def story(simulated: SimulatedHost) -> list:
        events = []
        for step in range(120):
            events.append(simulated.next_reading())
            if step == 40:
                events.append(simulated.apply_action("clean_temp_and_rotate_logs"))
        return events

    assert story(host("disk_filling", seed=5)) == story(host("disk_filling", seed=5))


def test_another_seed_or_name_gives_other_readings():
    readings = [host("healthy", seed=5).next_reading() for _ in range(1)]
    other_seed = [host("healthy", seed=6).next_reading() for _ in range(1)]
    other_name = [host("healthy", seed=5, name="web-02").next_reading() for _ in range(1)]

    assert readings[0].metrics() != other_seed[0].metrics()
    assert readings[0].metrics() != other_name[0].metrics()


def test_an_unknown_action_is_refused_by_name():
    with pytest.raises(ValueError, match="rm_rf_slash"):
        host("disk_filling").apply_action("rm_rf_slash")


def test_an_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="meteor_strike"):
        host("meteor_strike")


def test_every_healing_action_has_a_rollback_in_the_same_category():
    for action, rollback in ROLLBACK_OF.items():
        assert ACTIONS[action] == ACTIONS[rollback]
    assert set(ACTIONS) == set(ROLLBACK_OF) | set(ROLLBACK_OF.values())


@pytest.mark.parametrize(
    ("metrics", "severity"),
    [
        ({}, NO_ACTION),
        ({"disk_usage": 84.99}, NO_ACTION),
        ({"disk_usage": 85.0}, AUTO_HEAL),
        ({"memory_usage": 90.0}, AUTO_HEAL),
        ({"cpu_usage": 89.9}, NO_ACTION),
        ({"cpu_usage": 99.0}, AUTO_HEAL),
        ({"dns_latency_ms": 149.9}, NO_ACTION),
        ({"dns_latency_ms": 150.0}, HITL_REQUIRED),
        ({"firewall_change_requested": 1}, HITL_REQUIRED),
        # A risky problem outranks a safe one on the same reading.
        ({"disk_usage": 97.0, "firewall_change_requested": 1}, HITL_REQUIRED),
        ({"cpu_usage": 99.0, "dns_latency_ms": 600.0}, HITL_REQUIRED),
    ],
)
def test_label_reading_follows_the_documented_rule(metrics, severity):
    assert label_reading(reading(**metrics)) == severity


@settings(max_examples=40, deadline=None)
@given(
    scenario=st.sampled_from(SCENARIOS),
    seed=st.integers(min_value=-(2**40), max_value=2**40),
    actions=st.lists(st.sampled_from(sorted(ACTIONS)), max_size=6),
)
def test_readings_stay_in_range_whatever_is_done_to_the_host(scenario, seed, actions):
    simulated = SimulatedHost("h", scenario, seed, START, interval_seconds=10.0)
    readings = []
    for step in range(90):
        readings.append(simulated.next_reading())
        if step % 15 == 14 and actions:
            simulated.apply_action(actions.pop())

    for r in readings:
        assert 0.0 <= r.disk_usage <= 100.0
        assert 0.0 <= r.memory_usage <= 100.0
        assert 0.0 <= r.cpu_usage <= 100.0
        assert r.dns_latency_ms >= 0.0
        assert r.firewall_change_requested in (0, 1)
    times = [r.taken_at for r in readings]
    assert times[0] == START + timedelta(seconds=10)
    assert all(b - a == timedelta(seconds=10) for a, b in itertools.pairwise(times))
