"""Drift that does not change by itself: on a quiet fleet, over simulated time, the verdict is
"not enough samples yet" and then "ok", and stays there; a real shift is still reported, and a
reading hovering at a threshold does not flap between two levels."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from scoring.drift import DRIFT_WARNING
from scoring.features import Reading, build_features
from scoring.monitoring import (
    DRIFT_MIN_SAMPLES,
    LEAVE_FACTOR,
    OK,
    OUT_OF_DEPTH,
    TOO_FEW_SAMPLES,
    WATCH,
    drift_level,
    drift_report,
)
from scoring.scenarios import SimulatedHost

START = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
HOSTS = 20
INTERVAL = timedelta(seconds=5)  # the demo's


def quiet_fleet(minutes: int, seed: int = 11) -> list[Reading]:
    """`HOSTS` healthy hosts every 5 s, as the demo's agents simulate them: each at its own
    steady levels, with a host's usual small noise (a cron job's CPU, a slow DNS answer)."""
    hosts = [SimulatedHost(f"quiet-{i:02d}", "healthy", seed, START, 5.0) for i in range(HOSTS)]
    steps = int(timedelta(minutes=minutes) / INTERVAL)
    return [host.next_reading() for _ in range(steps) for host in hosts]


def verdicts(reference: dict, readings: list[Reading], every_minutes: int = 2) -> list[str]:
    """The level seen each `every_minutes` of simulated time, on every sample so far (well
    inside the day's window), each judged with the one before it, as the monitor does."""
    levels: list[str] = []
    per_minute = HOSTS * int(timedelta(minutes=1) / INTERVAL)
    for end in range(per_minute, len(readings) + 1, per_minute * every_minutes):
        seen = readings[:end]
        previous = next((level for level in reversed(levels) if level != TOO_FEW_SAMPLES), None)
        report = drift_report(
            1, reference, build_features(seen), [r.host for r in seen], previous=previous
        )
        levels.append(report.level)
    return levels


@pytest.fixture(scope="module")
def reference(default_model) -> dict:
    return default_model.feature_distribution


def test_a_quiet_fleet_is_not_enough_yet_then_ok_and_stays_ok(reference):
    levels = verdicts(reference, quiet_fleet(minutes=90))

    assert set(levels) == {TOO_FEW_SAMPLES, OK}
    # judged once, never unjudged again and never anything but ok
    first_ok = levels.index(OK)
    assert set(levels[:first_ok]) == {TOO_FEW_SAMPLES}
    assert set(levels[first_ok:]) == {OK}


def test_not_enough_samples_says_how_many_of_how_many(reference):
    few = quiet_fleet(minutes=2)  # 480 samples

    report = drift_report(1, reference, build_features(few), [r.host for r in few])

    assert report.level == TOO_FEW_SAMPLES
    assert report.label == f"not enough samples yet (480 of {DRIFT_MIN_SAMPLES})"


def test_a_real_shift_is_still_reported_and_held(reference):
    quiet = quiet_fleet(minutes=30)
    # then every disk fills 35 points, and stays full
    full = [
        replace(r, taken_at=r.taken_at + timedelta(minutes=30), disk_usage=r.disk_usage + 35)
        for r in quiet_fleet(minutes=60, seed=12)
    ]

    levels = verdicts(reference, quiet + full)

    assert levels[-1] in (WATCH, OUT_OF_DEPTH)
    assert levels[: len(quiet) // (HOSTS * 12 * 2)].count(OK) > 0  # ok before the shift
    # once the shift is seen it is not forgotten while it lasts
    first_seen = next(i for i, level in enumerate(levels) if level in (WATCH, OUT_OF_DEPTH))
    assert OK not in levels[first_seen:]


def test_a_reading_hovering_at_a_threshold_does_not_flap():
    hovering = [0.09, 0.11, 0.095, 0.105, 0.08, 0.102, 0.09]

    alone = [drift_level({"disk_usage": value}) for value in hovering]
    held: list[str] = []
    for value in hovering:
        held.append(drift_level({"disk_usage": value}, held[-1] if held else None))

    assert alone == [OK, WATCH, OK, WATCH, OK, WATCH, OK]  # what flapped
    assert held == [OK] + [WATCH] * 6
    # and it is left once clearly below
    below = DRIFT_WARNING * LEAVE_FACTOR - 0.001
    assert drift_level({"disk_usage": below}, WATCH) == OK
    assert drift_level({"disk_usage": 0.2}, OUT_OF_DEPTH) == OUT_OF_DEPTH
    assert drift_level({"disk_usage": 0.15}, OUT_OF_DEPTH) == WATCH
