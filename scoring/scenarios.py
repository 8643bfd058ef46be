"""The seed's host scenarios as a deterministic simulation.

Used by the data generator (scoring.synthetic) and by the demo fleet's simulated
agents (remediation.simulated_fleet), so it imports neither Django nor anything beyond numpy:
an agent runs it without Warden's server dependencies.

A SimulatedHost starts healthy; after a few steps its scenario's problem develops
(a disk fills, memory leaks, a process runs away, DNS latency spikes, a firewall
change is requested) and stays until the matching runbook action heals it. With
`recur` the problem comes back after a healthy spell, so a demo keeps moving.
Later episodes are sometimes mild: they peak near or below the problem level and
subside by themselves, as real hosts often do.

Ground truth (label_reading), on the levels of one reading alone:

    HITL_REQUIRED (2)  firewall_change_requested == 1, or dns_latency_ms >= 150
                       (firewall and DNS changes are security- and network-sensitive)
    AUTO_HEAL (1)      otherwise disk_usage >= 85 or memory_usage >= 90 or cpu_usage >= 90
                       (safe, reversible clean-ups and restarts)
    NO_ACTION (0)      otherwise

HITL dominates when both apply. Deltas do not enter the label: the same reading
gets the same label whatever came before it, which a host's first sample needs.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

import numpy as np

from scoring.features import Reading

# The values of scoring.choices.Severity; not imported from there because that
# module needs Django, and a simulated agent runs without it.
NO_ACTION = 0
AUTO_HEAL = 1
HITL_REQUIRED = 2

SCENARIOS: tuple[str, ...] = (
    "healthy",
    "disk_filling",
    "memory_leak",
    "cpu_runaway",
    "dns_latency_spike",
    "firewall_change_request",
)

# The level at which each metric becomes a problem (label_reading).
PROBLEM_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {
        "disk_usage": 85.0,
        "memory_usage": 90.0,
        "cpu_usage": 90.0,
        "dns_latency_ms": 150.0,
        "firewall_change_requested": 1.0,
    }
)

# The metric each problem scenario drives.
SCENARIO_METRIC: Mapping[str, str] = MappingProxyType(
    {
        "disk_filling": "disk_usage",
        "memory_leak": "memory_usage",
        "cpu_runaway": "cpu_usage",
        "dns_latency_spike": "dns_latency_ms",
        "firewall_change_request": "firewall_change_requested",
    }
)

# The runbook action that heals each problem scenario.
HEALING_ACTION: Mapping[str, str] = MappingProxyType(
    {
        "disk_filling": "clean_temp_and_rotate_logs",
        "memory_leak": "restart_leaking_service",
        "cpu_runaway": "throttle_runaway_process",
        "dns_latency_spike": "switch_dns_resolver",
        "firewall_change_request": "apply_firewall_change",
    }
)

# Each healing action -> the action that undoes it.
ROLLBACK_OF: Mapping[str, str] = MappingProxyType(
    {
        "clean_temp_and_rotate_logs": "restore_quarantined_files",
        "restart_leaking_service": "restart_service",
        "throttle_runaway_process": "remove_cpu_throttle",
        "switch_dns_resolver": "restore_dns_resolver",
        "apply_firewall_change": "revert_firewall_change",
    }
)

_ACTION_METRIC: Mapping[str, str] = MappingProxyType(
    {action: SCENARIO_METRIC[scenario] for scenario, action in HEALING_ACTION.items()}
)
_METRIC_CATEGORY: Mapping[str, str] = MappingProxyType(
    {
        "disk_usage": "disk",
        "memory_usage": "memory",
        "cpu_usage": "cpu",
        "dns_latency_ms": "dns",
        "firewall_change_requested": "firewall",
    }
)

# Every allow-listed action (healing actions and their rollbacks) -> its ticket category.
ACTIONS: Mapping[str, str] = MappingProxyType(
    {
        **{action: _METRIC_CATEGORY[metric] for action, metric in _ACTION_METRIC.items()},
        **{
            rollback: _METRIC_CATEGORY[_ACTION_METRIC[action]]
            for action, rollback in ROLLBACK_OF.items()
        },
    }
)
_UNDONE_BY: Mapping[str, str] = MappingProxyType(
    {rollback: action for action, rollback in ROLLBACK_OF.items()}
)

# Where the normal of a host that runs hot sits: around the problem level, so such a
# host keeps crossing it back and forth (`runs_hot`, for one metric of a host).
HOT_NORMAL: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "disk_usage": (78.0, 90.0),
        "memory_usage": (82.0, 95.0),
        "cpu_usage": (75.0, 92.0),
        "dns_latency_ms": (140.0, 260.0),
    }
)

# Steps of healthy running before the first episode, and between a heal and the next.
FIRST_ONSET_STEPS = (3, 15)
RECURRENCE_STEPS = (20, 60)
# Share of later episodes that stay mild and subside without help.
MILD_EPISODE_SHARE = 0.5


def derive_seed(*parts: object) -> int:
    """A stable 64-bit seed from `parts` (Python's hash() changes between processes)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def label_reading(reading: Reading) -> int:
    """The ground-truth severity of one reading (0, 1 or 2); the rule is in the module docstring."""
    if reading.firewall_change_requested >= 1:
        return HITL_REQUIRED
    if reading.dns_latency_ms >= PROBLEM_THRESHOLDS["dns_latency_ms"]:
        return HITL_REQUIRED
    if (
        reading.disk_usage >= PROBLEM_THRESHOLDS["disk_usage"]
        or reading.memory_usage >= PROBLEM_THRESHOLDS["memory_usage"]
        or reading.cpu_usage >= PROBLEM_THRESHOLDS["cpu_usage"]
    ):
        return AUTO_HEAL
    return NO_ACTION


@dataclass(frozen=True, slots=True)
class _Episode:
    """How one occurrence of the scenario's problem unfolds."""

    rate: float  # growth per step (points, or a factor for DNS latency)
    peak: float  # the level it settles at
    mild: bool  # subsides by itself after `plateau` steps
    plateau: int


@dataclass(frozen=True, slots=True)
class _Undo:
    """What a healing action changed, so that its rollback can put it back."""

    metric: str
    level: float
    healed: bool
    phase: str
    episode: _Episode | None
    countdown: int | None
    plateau_left: int


class SimulatedHost:
    """One host living through `scenario`, one reading per step, deterministic for its seed.

    `runs_hot` names a metric whose normal sits near its problem level (HOT_NORMAL): a
    busy database's memory, a resolver far away. Healing does not change a host's normal.
    """

    def __init__(
        self,
        name: str,
        scenario: str,
        seed: int,
        start: datetime,
        interval_seconds: float = 5.0,
        recur: bool = True,
        *,
        runs_hot: str | None = None,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (one of: {', '.join(SCENARIOS)})")
        if runs_hot is not None and runs_hot not in HOT_NORMAL:
            raise ValueError(f"runs_hot must be one of {', '.join(HOT_NORMAL)}, got {runs_hot!r}")
        if not interval_seconds > 0:
            raise ValueError(f"interval_seconds must be positive, got {interval_seconds!r}")
        self.name = name
        self.scenario = scenario
        self.recur = recur
        self.interval = timedelta(seconds=interval_seconds)
        self.taken_at = start
        self._rng = np.random.default_rng(derive_seed("simulated-host", name, seed))
        rng = self._rng
        # This host's normal: every host idles at its own levels.
        self._base = {
            "disk_usage": float(rng.uniform(30.0, 62.0)),
            "memory_usage": float(rng.uniform(35.0, 65.0)),
            "cpu_usage": float(rng.uniform(8.0, 40.0)),
            "dns_latency_ms": float(rng.uniform(8.0, 35.0)),
            "firewall_change_requested": 0.0,
        }
        if runs_hot is not None:
            self._base[runs_hot] = float(rng.uniform(*HOT_NORMAL[runs_hot]))
        self._level = dict(self._base)
        self._metric = SCENARIO_METRIC.get(scenario)
        self._phase = "healthy"  # healthy -> developing -> problem (-> subsiding) -> healthy
        self._episode: _Episode | None = None
        self._plateau_left = 0
        self._episodes = 0
        self._countdown: int | None = (
            int(rng.integers(FIRST_ONSET_STEPS[0], FIRST_ONSET_STEPS[1] + 1))
            if self._metric
            else None
        )
        self._undo: dict[str, _Undo] = {}

    @property
    def problem_active(self) -> bool:
        """True while the scenario's problem is developing or present."""
        return self._phase in ("developing", "problem")

    def next_reading(self) -> Reading:
        """Advance one step (time += interval) and return the host's reading."""
        self.taken_at += self.interval
        self._drift()
        self._advance_episode()
        rng = self._rng
        level = self._level
        # Skewed noise: usage spikes up more often than it dips; latency is log-normal.
        disk = level["disk_usage"] + rng.gamma(2.0, 0.1) - 0.2
        memory = level["memory_usage"] + rng.gamma(2.0, 0.6) - 1.2
        cpu = level["cpu_usage"] + rng.gamma(1.5, 3.0) - 4.5
        runaway = self._metric == "cpu_usage" and self._phase != "healthy"
        if not runaway and rng.random() < 0.03:
            cpu += rng.uniform(10.0, 35.0)  # a cron job or a deploy, gone next step
        dns = level["dns_latency_ms"] * rng.lognormal(0.0, 0.2)
        if rng.random() < 0.02:
            dns *= rng.uniform(1.5, 3.0)  # one slow upstream answer
        return Reading(
            host=self.name,
            taken_at=self.taken_at,
            disk_usage=_percent(disk),
            memory_usage=_percent(memory),
            cpu_usage=_percent(cpu),
            dns_latency_ms=round(max(float(dns), 0.0), 2),
            firewall_change_requested=int(level["firewall_change_requested"] >= 1),
        )

    def apply_action(self, action: str) -> str:
        """Run an allow-listed action on the host; returns one line saying what it did."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r} (one of: {', '.join(sorted(ACTIONS))})")
        if action in _UNDONE_BY:
            return self._roll_back(action)
        metric = _ACTION_METRIC[action]
        before = self._level[metric]
        heals = metric == self._metric and self.problem_active
        if not heals and not self._above_normal(metric):
            return f"{action}: {_describe(metric, before)} is normal, nothing to do"
        self._undo[ROLLBACK_OF[action]] = _Undo(
            metric=metric,
            level=before,
            healed=heals,
            phase=self._phase,
            episode=self._episode,
            countdown=self._countdown,
            plateau_left=self._plateau_left,
        )
        self._level[metric] = self._normal_level(metric)
        if heals:
            self._end_episode()
        after = self._level[metric]
        return f"{action}: {_describe(metric, before)} -> {_describe(metric, after)}"

    # --- dynamics ---------------------------------------------------------------------

    def _drift(self) -> None:
        """Healthy wander: each metric reverts toward this host's normal."""
        rng = self._rng
        level, base = self._level, self._base
        driven = self._metric if self._phase != "healthy" else None
        if driven != "disk_usage":
            # Logs grow, rotate, temp files come and go: a slow wander of a point or two.
            level["disk_usage"] += 0.02 * (base["disk_usage"] - level["disk_usage"])
            level["disk_usage"] += rng.normal(0.0, 0.3)
        if driven != "memory_usage":
            level["memory_usage"] += 0.1 * (base["memory_usage"] - level["memory_usage"])
            level["memory_usage"] += rng.normal(0.0, 0.8)
        if driven != "cpu_usage":
            level["cpu_usage"] += 0.3 * (base["cpu_usage"] - level["cpu_usage"])
            level["cpu_usage"] += rng.normal(0.0, 2.0)
        if driven != "dns_latency_ms":
            level["dns_latency_ms"] += 0.3 * (base["dns_latency_ms"] - level["dns_latency_ms"])
            level["dns_latency_ms"] = max(level["dns_latency_ms"] + rng.normal(0.0, 1.0), 1.0)

    def _advance_episode(self) -> None:
        metric = self._metric
        if metric is None:
            return
        if self._phase == "healthy":
            if self._countdown is None:
                return
            self._countdown -= 1
            if self._countdown > 0:
                return
            self._countdown = None
            self._episode = self._new_episode()
            self._phase = "developing"
        episode = self._episode
        assert episode is not None
        level = self._level
        rng = self._rng
        if self._phase == "developing":
            if metric == "firewall_change_requested":
                level[metric] = 1.0  # a request is there or not
            elif metric == "dns_latency_ms":
                level[metric] *= episode.rate * rng.uniform(0.8, 1.2)
            else:
                level[metric] += episode.rate * rng.uniform(0.6, 1.4)
            if level[metric] >= episode.peak:
                level[metric] = episode.peak
                self._phase = "problem"
                self._plateau_left = episode.plateau
        elif self._phase == "problem":
            if episode.mild:
                self._plateau_left -= 1
                if self._plateau_left <= 0:
                    self._phase = "subsiding"
        elif self._phase == "subsiding":
            level[metric] += 0.3 * (self._base[metric] - level[metric])
            if abs(level[metric] - self._base[metric]) < 0.05 * max(self._base[metric], 1.0):
                self._end_episode()

    def _new_episode(self) -> _Episode:
        rng = self._rng
        metric = self._metric
        self._episodes += 1
        # The first episode is always a full one, so a demo host shows its scenario at once.
        mild = self._episodes > 1 and metric != "firewall_change_requested"
        mild = mild and bool(rng.random() < MILD_EPISODE_SHARE)
        plateau = int(rng.integers(8, 30))
        if metric == "disk_usage":
            # Mostly 1-3 points a step; sometimes a log explosion fills it much faster.
            rate = rng.uniform(5.0, 12.0) if rng.random() < 0.15 else rng.uniform(1.0, 3.0)
            peak = rng.uniform(80.0, 90.0) if mild else rng.uniform(96.0, 99.5)
        elif metric == "memory_usage":
            rate = rng.uniform(0.5, 2.0)
            peak = rng.uniform(85.0, 95.0) if mild else rng.uniform(93.0, 99.0)
        elif metric == "cpu_usage":
            rate = rng.uniform(15.0, 35.0)
            peak = rng.uniform(84.0, 96.0) if mild else rng.uniform(94.0, 100.0)
        elif metric == "dns_latency_ms":
            rate = rng.uniform(1.8, 4.0)  # a factor per step
            peak = rng.uniform(110.0, 200.0) if mild else rng.uniform(200.0, 900.0)
        else:  # a firewall change request
            rate, peak = 1.0, 1.0
        return _Episode(rate=float(rate), peak=float(peak), mild=mild, plateau=plateau)

    def _end_episode(self) -> None:
        self._phase = "healthy"
        self._episode = None
        self._plateau_left = 0
        self._countdown = (
            int(self._rng.integers(RECURRENCE_STEPS[0], RECURRENCE_STEPS[1] + 1))
            if self.recur
            else None
        )

    # --- actions ----------------------------------------------------------------------

    def _roll_back(self, rollback: str) -> str:
        undo = self._undo.pop(rollback, None)
        if undo is None:
            return f"{rollback}: nothing to restore, {_UNDONE_BY[rollback]} has not run"
        now = self._level[undo.metric]
        self._level[undo.metric] = undo.level
        if undo.healed:
            self._phase = undo.phase
            self._episode = undo.episode
            self._countdown = undo.countdown
            self._plateau_left = undo.plateau_left
        return f"{rollback}: {_describe(undo.metric, now)} -> {_describe(undo.metric, undo.level)}"

    def _above_normal(self, metric: str) -> bool:
        if metric == "firewall_change_requested":
            return self._level[metric] >= 1
        if metric == "disk_usage":
            return self._level[metric] > 55.0
        return self._level[metric] > self._base[metric] * 1.2

    def _normal_level(self, metric: str) -> float:
        rng = self._rng
        if metric == "firewall_change_requested":
            return 0.0
        if metric == "disk_usage":
            # Cleaning frees temp files and old logs, whatever the host idled at before.
            return float(rng.uniform(40.0, 55.0))
        return self._base[metric] * float(rng.uniform(0.9, 1.1))


def _percent(value: float) -> float:
    return round(min(max(float(value), 0.0), 100.0), 2)


def _describe(metric: str, value: float) -> str:
    if metric == "firewall_change_requested":
        return "firewall change requested" if value >= 1 else "no firewall change requested"
    if metric == "dns_latency_ms":
        return f"dns latency {value:.0f} ms"
    return f"{metric.removesuffix('_usage')} {value:.1f}%"
