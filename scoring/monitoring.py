"""Is a model out of its depth? Drift of recent samples against its training data.

Read by the ModelVersion admin, the console and /metrics (config/metrics.py).

A verdict people can trust does not change by itself on a quiet fleet:

- it is judged only on enough samples (DRIFT_MIN_SAMPLES): before that it says "not
  enough samples yet (N of M)". A few minutes of a fleet show each host at one moment of
  its life, where the training data saw whole lives;
- the window is the last day, and never fewer than the newest DRIFT_MIN_SAMPLES samples
  (within DRIFT_LOOKBACK): a fleet that sends little is judged on as much as a busy one,
  not on the handful of its last day;
- it reads each host's minute summaries (one row a host a minute, its newest reading as
  the model saw it), never the raw samples, so its cost does not grow with what is kept;
- it is judged on the samples that moved where the training data was thin (scoring.drift's
  surplus) beyond sampling noise: a fleet quieter than the training data (all healthy) is
  within the model's depth;
- a level once reached is left only when the excess falls clearly below its threshold
  (LEAVE_FACTOR): a reading hovering at a threshold does not flap between two levels.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
from django.core.cache import cache

from scoring.choices import ModelStatus
from scoring.drift import (
    DRIFT_ALERT,
    DRIFT_WARNING,
    population_stability_index,
    population_surplus,
    sampling_noise,
)
from scoring.features import FEATURE_NAMES
from scoring.models import ModelVersion, SampleMinute

DRIFT_WINDOW = timedelta(hours=24)
# Too little in the last day: the newest DRIFT_MIN_SAMPLES samples, back this far at most.
DRIFT_LOOKBACK = timedelta(days=7)
# Rows read at most: a host's minute each (recent_features), so a scrape costs the same
# however many samples are kept.
DRIFT_MAX_SAMPLES = 10_000
# Fewer than this says nothing reliable: about 4 minutes of the demo's 20 hosts at 5 s.
DRIFT_MIN_SAMPLES = 1000
# A level is left when the excess falls under this share of its threshold.
LEAVE_FACTOR = 0.7
# The last verdict per version (per process, or shared with a shared cache), for hysteresis.
LEVEL_CACHE_KEY = "scoring:drift-level:{version}"
LEVEL_CACHE_SECONDS = 7 * 24 * 3600

# Levels, in rising order of concern; their rank is the Prometheus gauge's value.
OK = "ok"
WATCH = "watch"
OUT_OF_DEPTH = "out_of_depth"
TOO_FEW_SAMPLES = "too_few_samples"
LEVEL_RANK = {OK: 0, WATCH: 1, OUT_OF_DEPTH: 2}
LEVEL_LABEL = {
    OK: "ok",
    WATCH: "watch",
    OUT_OF_DEPTH: "out of its depth",
    TOO_FEW_SAMPLES: "not enough samples yet",
}
THRESHOLDS = {WATCH: DRIFT_WARNING, OUT_OF_DEPTH: DRIFT_ALERT}


@dataclass(frozen=True)
class DriftReport:
    version: int
    samples: int
    psi: dict[str, float]  # feature -> population stability index
    level: str  # OK | WATCH | OUT_OF_DEPTH | TOO_FEW_SAMPLES
    # feature -> PSI that sampling noise alone reaches (scoring.drift.sampling_noise)
    noise: dict[str, float] = field(default_factory=dict)
    hosts: int = 0
    # feature -> one-sided PSI: the bins filled more than in training (population_surplus)
    surplus: dict[str, float] = field(default_factory=dict)

    @property
    def excess(self) -> dict[str, float]:
        """The surplus beyond sampling noise: what the level is judged on. The surplus
        counts one side of each bin's deviation, so about half of the noise (which bounds
        the two-sided PSI) is its share."""
        surplus = self.surplus or self.psi
        return {
            name: round(max(value - self.noise.get(name, 0.0) / 2, 0.0), 4)
            for name, value in surplus.items()
        }

    @property
    def worst(self) -> tuple[str, float]:
        """The feature furthest beyond its noise (then highest PSI), and its PSI."""
        excess = self.excess
        name = max(excess, key=lambda n: (excess[n], self.psi[n]), default="")
        return name, self.psi.get(name, 0.0)

    @property
    def label(self) -> str:
        if self.level == TOO_FEW_SAMPLES:
            return f"{LEVEL_LABEL[self.level]} ({self.samples} of {DRIFT_MIN_SAMPLES})"
        return LEVEL_LABEL[self.level]


def drift_level(psi: dict[str, float], previous: str | None = None) -> str:
    """The level of the worst feature (PSI beyond noise): one far off is enough to distrust.

    With the `previous` level, a level reached is kept until the worst falls under
    LEAVE_FACTOR of its threshold (hysteresis), and a higher one is entered at its threshold.
    """
    worst = max(psi.values(), default=0.0)
    level = OK
    for candidate in (WATCH, OUT_OF_DEPTH):
        threshold = THRESHOLDS[candidate]
        held = previous is not None and LEVEL_RANK.get(previous, 0) >= LEVEL_RANK[candidate]
        if worst >= (threshold * LEAVE_FACTOR if held else threshold):
            level = candidate
    return level


def recent_features(now: datetime) -> tuple[np.ndarray, list[str], int]:
    """The feature rows drift judges: each host's newest reading of each minute, as the
    model saw it (scoring.models.SampleMinute.last_features, deltas included), for the last
    DRIFT_WINDOW's minutes, newest DRIFT_MAX_SAMPLES (and back into DRIFT_LOOKBACK until
    they stand for at least DRIFT_MIN_SAMPLES readings); each row's host (a host's readings
    move together: see scoring.drift); and how many readings the rows stand for.

    A minute's newest reading stands for the minute (a systematic sample, which leaves each
    bin's share as it was), so the cost is one indexed read of at most DRIFT_MAX_SAMPLES
    rows, however many samples are kept, and a chatty host weighs no more than a quiet one.
    """
    rows = list(
        SampleMinute.objects.filter(minute__gte=now - DRIFT_LOOKBACK, minute__lte=now)
        .order_by("-minute")
        .values_list("minute", "host_id", "samples", "last_features")[:DRIFT_MAX_SAMPLES]
    )
    since = now - DRIFT_WINDOW
    taken = 0
    readings = 0
    for minute, _, samples, _ in rows:  # the day's, or enough for a quiet day
        if minute < since and readings >= DRIFT_MIN_SAMPLES:
            break
        taken += 1
        readings += samples
    rows = rows[:taken]
    X = np.asarray([features for *_, features in rows], dtype=np.float64)
    return X.reshape(len(rows), len(FEATURE_NAMES)), [str(row[1]) for row in rows], readings


def drift_report(
    version: int,
    reference: dict,
    X: np.ndarray,
    hosts: Sequence[str] | None = None,
    previous: str | None = None,
    readings: int | None = None,
) -> DriftReport:
    """PSI per feature of X against a training `reference` (scoring.drift), its sampling
    noise given each row's host (`hosts`; None: rows independent), and the level (held
    from `previous`, the last verdict, until clearly left: see drift_level). `readings`:
    how many readings the rows stand for (recent_features; by default one a row), which
    must reach DRIFT_MIN_SAMPLES before anything is judged."""
    n_hosts = len(set(hosts)) if hosts is not None else len(X)
    readings = len(X) if readings is None else readings
    if readings < DRIFT_MIN_SAMPLES or not len(X) or not reference:
        return DriftReport(version, readings, {}, TOO_FEW_SAMPLES, hosts=n_hosts)
    psi = population_stability_index(reference, X, FEATURE_NAMES)
    surplus = population_surplus(reference, X, FEATURE_NAMES)
    noise = sampling_noise(reference, X, FEATURE_NAMES, hosts)
    report = DriftReport(
        version,
        readings,
        {name: round(value, 4) for name, value in psi.items()},
        OK,
        {name: round(value, 4) for name, value in noise.items()},
        n_hosts,
        {name: round(value, 4) for name, value in surplus.items()},
    )
    # Thresholds apply beyond noise: few hosts make PSI large without any shift.
    return replace(report, level=drift_level(report.excess, previous))


def model_drift(version: ModelVersion, now: datetime) -> DriftReport:
    """PSI per feature of the last day's samples against `version`'s training distribution,
    its level held from this version's last verdict (hysteresis)."""
    X, hosts, readings = recent_features(now)
    key = LEVEL_CACHE_KEY.format(version=version.version)
    report = drift_report(
        version.version,
        version.feature_distribution,
        X,
        hosts,
        previous=cache.get(key),
        readings=readings,
    )
    if report.level in LEVEL_RANK:  # "not enough samples" keeps the last verdict for later
        cache.set(key, report.level, LEVEL_CACHE_SECONDS)
    return report


def serving_drift(now: datetime) -> DriftReport | None:
    """The drift of the approved version; None when no version is approved."""
    version = ModelVersion.objects.filter(status=ModelStatus.APPROVED).first()
    return model_drift(version, now) if version else None
