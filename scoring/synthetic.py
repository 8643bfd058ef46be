"""Labelled training and evaluation data from a simulated fleet.

A fleet of SimulatedHosts (scoring.scenarios), mostly healthy, runs for `steps`
readings each while a simulated operator heals problems the way Warden does:
safe ones after a few steps at the problem level, risky ones after a person's
slower approval, and now and then a fix that is rolled back.

Half the problem hosts carry one or two further problems (EXTRA_PROBLEMS_SHARE), each
on its own course, so some readings show several at once: a DNS spike or a firewall
change request with a full disk, high memory or CPU (HITL_REQUIRED: any risky signal
needs a person), or safe problems together (AUTO_HEAL). While a reading needs a
person the engine heals nothing on that host, so a safe problem that meets a risky
one stays until the person has acted. About 2-3% of the readings carry several
problems, about as many in a held-out fleet drawn with another seed; without them the
model never learned that one risky signal outweighs two or three safe problems.

Borderline samples near every threshold come from three places: problems climb
through their thresholds, mild episodes peak around them, and a quarter of the
hosts run hot on one metric (a normal level just below or above its threshold).
The trees bin each feature by quantiles, so this mass near the thresholds is what
lets them split where the rule does.

Labels come from scoring.scenarios.label_reading, then `label_noise` of them are
flipped (people and logs are not perfect); evaluate against label_noise=0.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from scoring.features import METRIC_NAMES, Reading, build_features
from scoring.scenarios import (
    HEALING_ACTION,
    HITL_REQUIRED,
    HOT_NORMAL,
    PROBLEM_THRESHOLDS,
    ROLLBACK_OF,
    SCENARIO_METRIC,
    SCENARIOS,
    SimulatedHost,
    derive_seed,
    label_reading,
)

# Share of hosts per scenario: most of a fleet is healthy most of the time.
SCENARIO_SHARE: dict[str, float] = {
    "healthy": 0.40,
    "disk_filling": 0.14,
    "memory_leak": 0.12,
    "cpu_runaway": 0.12,
    "dns_latency_spike": 0.12,
    "firewall_change_request": 0.10,
}
# Of the problem hosts, the share with 1 or 2 further, different problems on top of
# their own (a runaway process that also fills the disk; a DNS outage whose retries
# load CPU and memory). Each runs its own course, so they overlap only some of the time.
EXTRA_PROBLEMS_SHARE: dict[int, float] = {1: 0.25, 2: 0.25}
# Share of hosts with one metric whose normal sits near its problem level: they give
# the model dense samples on both sides of every threshold.
RUNS_HOT_SHARE = 0.25
# Steps at the problem level before it is healed: the engine acts on a safe problem
# within a few samples; a risky one waits for a person.
AUTO_HEAL_WAIT = (2, 6)
HITL_WAIT = (4, 20)
RISKY_SCENARIOS = frozenset({"dns_latency_spike", "firewall_change_request"})
# Share of fixes that fail verification and are rolled back the next step.
ROLLED_BACK_SHARE = 0.05
# Share of labels flipped by default (people and logs are not perfect).
LABEL_NOISE = 0.01
# Fixed, so a dataset depends only on its arguments.
START = datetime(2025, 1, 6, tzinfo=UTC)
INTERVAL_SECONDS = 10.0
N_CLASSES = 3


@dataclass(frozen=True)
class Dataset:
    """Readings in time order per host, their feature matrix and labels."""

    readings: tuple[Reading, ...]
    X: np.ndarray
    y: np.ndarray


class _Operator:
    """Heals one simulated problem the way Warden would: wait, act, sometimes roll back."""

    def __init__(self, host: SimulatedHost, rng: np.random.Generator) -> None:
        self.host = host
        self.rng = rng
        self.action = HEALING_ACTION.get(host.scenario)
        self.risky = host.scenario in RISKY_SCENARIOS
        self.at_problem = 0
        self.wait = self._draw_wait()
        self.roll_back_next = False

    def _draw_wait(self) -> int:
        low, high = HITL_WAIT if self.risky else AUTO_HEAL_WAIT
        return int(self.rng.integers(low, high + 1))

    def observe(self, reading: Reading, waiting_for_person: bool) -> None:
        """React to the host's latest reading: its own scenario's problem only, and only
        after `wait` readings in a row at the problem level.

        While the host's reading is HITL_REQUIRED (`waiting_for_person`), the engine heals
        nothing on it: a safe problem stays until the reading no longer needs a person,
        then is healed at once if it has waited long enough.
        """
        if self.action is None:
            return
        if self.roll_back_next:
            self.host.apply_action(ROLLBACK_OF[self.action])
            self.roll_back_next = False
            return
        metric = SCENARIO_METRIC[self.host.scenario]
        at_level = getattr(reading, metric) >= PROBLEM_THRESHOLDS[metric]
        if not (at_level and self.host.problem_active):
            self.at_problem = 0
            return
        self.at_problem += 1
        if waiting_for_person and not self.risky:
            return
        if self.at_problem >= self.wait:
            self.host.apply_action(self.action)
            self.at_problem = 0
            self.wait = self._draw_wait()
            self.roll_back_next = bool(self.rng.random() < ROLLED_BACK_SHARE)


def generate_dataset(
    n_hosts: int, steps: int, seed: int, label_noise: float = LABEL_NOISE
) -> Dataset:
    """A fleet of `n_hosts` x `steps` labelled readings; the same arguments give the same data."""
    if n_hosts < 1 or steps < 1:
        raise ValueError(f"n_hosts and steps must be at least 1, got {n_hosts} and {steps}")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be between 0 and 1, got {label_noise}")
    rng = np.random.default_rng(derive_seed("synthetic-fleet", seed))
    readings: list[Reading] = []
    for index, scenario in enumerate(_fleet_scenarios(n_hosts, rng)):
        name = f"host-{index:04d}"
        runs_hot = None
        if rng.random() < RUNS_HOT_SHARE:
            choices = [m for m in HOT_NORMAL if m != SCENARIO_METRIC.get(scenario)]
            runs_hot = str(rng.choice(choices))
        hosts = [SimulatedHost(name, scenario, seed, START, INTERVAL_SECONDS, runs_hot=runs_hot)]
        for extra, other in enumerate(_extra_problems(scenario, rng), start=2):
            hosts.append(SimulatedHost(f"{name}/{extra}", other, seed, START, INTERVAL_SECONDS))
        operators = [_Operator(host, rng) for host in hosts]
        for _ in range(steps):
            own = [host.next_reading() for host in hosts]
            combined = _combine(name, hosts, own)
            waiting = label_reading(combined) == HITL_REQUIRED
            for operator, reading in zip(operators, own, strict=True):
                operator.observe(reading, waiting)
            readings.append(combined)
    X = build_features(readings)
    y = np.fromiter((label_reading(r) for r in readings), dtype=np.int64, count=len(readings))
    _flip_labels(y, label_noise, rng)
    return Dataset(readings=tuple(readings), X=X, y=y)


def _fleet_scenarios(n_hosts: int, rng: np.random.Generator) -> list[str]:
    """Scenarios in SCENARIO_SHARE proportions (largest remainder), in a shuffled order."""
    quotas = {scenario: share * n_hosts for scenario, share in SCENARIO_SHARE.items()}
    counts = {scenario: int(quota) for scenario, quota in quotas.items()}
    by_remainder = sorted(quotas, key=lambda s: (-(quotas[s] - counts[s]), SCENARIOS.index(s)))
    for scenario in by_remainder[: n_hosts - sum(counts.values())]:
        counts[scenario] += 1
    fleet = [scenario for scenario in SCENARIOS for _ in range(counts[scenario])]
    return [fleet[i] for i in rng.permutation(len(fleet))]


def _extra_problems(scenario: str, rng: np.random.Generator) -> list[str]:
    """The further problems of a host whose own is `scenario`: none, or 1-2 others."""
    if scenario == "healthy":
        return []
    draw = rng.random()
    count = 0
    for extra, share in EXTRA_PROBLEMS_SHARE.items():
        if draw < share:
            count = extra
            break
        draw -= share
    if count == 0:
        return []
    others = [s for s in SCENARIOS[1:] if s != scenario]
    return [str(s) for s in rng.choice(others, size=count, replace=False)]


def _combine(name: str, hosts: list[SimulatedHost], own: list[Reading]) -> Reading:
    """One host's reading: the first simulation's, with each further one's problem metric."""
    values = {metric: getattr(own[0], metric) for metric in METRIC_NAMES}
    for host, reading in zip(hosts[1:], own[1:], strict=True):
        metric = SCENARIO_METRIC[host.scenario]
        values[metric] = getattr(reading, metric)
    return Reading(host=name, taken_at=own[0].taken_at, **values)


def _flip_labels(y: np.ndarray, label_noise: float, rng: np.random.Generator) -> None:
    """Give exactly round(label_noise * n) labels, chosen at random, another class."""
    count = round(label_noise * len(y))
    if count == 0:
        return
    chosen = rng.choice(len(y), size=count, replace=False)
    # Adding 1 or 2 modulo 3 picks one of the two other classes, evenly.
    y[chosen] = (y[chosen] + rng.integers(1, N_CLASSES, size=count)) % N_CLASSES
