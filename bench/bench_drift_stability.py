"""The drift verdict over simulated time: a quiet fleet, the demo's fleet, and a real shift.

Fleets of 20 simulated hosts (scoring.scenarios, the demo agents' own simulation) send a
reading every 5 s for 60 simulated minutes. Each 2 minutes the verdict is judged on every
sample so far (the day's window), against the default model's training data, with the
verdict before it (the monitor's hysteresis), as `scoring.monitoring.drift_report` does.
Prints each fleet's verdicts and how often the verdict changed. No database, no timing.

Run: .venv/bin/python bench/bench_drift_stability.py
"""

import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from scoring.drift import reference_distribution  # noqa: E402
from scoring.features import FEATURE_NAMES, Reading, build_features  # noqa: E402
from scoring.monitoring import TOO_FEW_SAMPLES, drift_report  # noqa: E402
from scoring.scenarios import SimulatedHost  # noqa: E402
from scoring.synthetic import generate_dataset  # noqa: E402
from scoring.training import DEFAULT_STEPS, DEFAULT_TRAIN_HOSTS, TRAIN_SEED  # noqa: E402

START = datetime(2026, 12, 6, tzinfo=UTC)
HOSTS, MINUTES, EVERY = 20, 60, 2
STEPS_PER_MINUTE = 12  # one reading per 5 s
DEMO = (
    ["disk_filling"] * 3
    + ["memory_leak"] * 3
    + ["cpu_runaway"] * 2
    + ["dns_latency_spike"] * 2
    + ["firewall_change_request"] * 2
    + ["healthy"] * 8
)


def fleet(scenarios: list[str], disk_shift: float = 0.0) -> list[Reading]:
    hosts = [
        SimulatedHost(f"demo-{i:02d}", scenarios[i % len(scenarios)], 7, START, 5.0)
        for i in range(HOSTS)
    ]
    return [
        replace(reading, disk_usage=min(reading.disk_usage + disk_shift, 100.0))
        for _ in range(MINUTES * STEPS_PER_MINUTE)
        for reading in (host.next_reading() for host in hosts)
    ]


def verdicts(reference: dict, readings: list[Reading]) -> list[str]:
    levels: list[str] = []
    step = HOSTS * STEPS_PER_MINUTE * EVERY
    for end in range(step, len(readings) + 1, step):
        seen = readings[:end]
        previous = next((level for level in reversed(levels) if level != TOO_FEW_SAMPLES), None)
        report = drift_report(
            1, reference, build_features(seen), [r.host for r in seen], previous=previous
        )
        levels.append(report.level)
    return levels


def main() -> None:
    train = generate_dataset(DEFAULT_TRAIN_HOSTS, DEFAULT_STEPS, TRAIN_SEED)
    reference = reference_distribution(train.X, FEATURE_NAMES)
    for name, readings in (
        ("quiet (all healthy)", fleet(["healthy"])),
        ("the demo's mix", fleet(DEMO)),
        ("quiet, disks 30 points fuller", fleet(["healthy"], disk_shift=30.0)),
    ):
        levels = verdicts(reference, readings)
        changes = sum(1 for a, b in pairwise(levels) if a != b)
        timeline = " ".join(
            f"{(i + 1) * EVERY}m:{level}" for i, level in enumerate(levels) if i % 3 == 0
        )
        print(f"{name}: {changes} changes; {timeline}")


if __name__ == "__main__":
    main()
