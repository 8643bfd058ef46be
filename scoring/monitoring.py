"""Is a model out of its depth? Drift of recent samples against its training data.

Read by the ModelVersion admin and exported at /metrics (config/metrics.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from scoring.choices import ModelStatus
from scoring.drift import (
    DRIFT_ALERT,
    DRIFT_WARNING,
    population_stability_index,
    sampling_noise,
)
from scoring.features import FEATURE_NAMES, Reading, build_features
from scoring.models import MetricSample, ModelVersion

DRIFT_WINDOW = timedelta(hours=24)
DRIFT_MAX_SAMPLES = 20_000
DRIFT_MIN_SAMPLES = 200  # fewer than this says nothing reliable

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
    TOO_FEW_SAMPLES: "too few samples",
}


@dataclass(frozen=True)
class DriftReport:
    version: int
    samples: int
    psi: dict[str, float]  # feature -> population stability index
    level: str  # OK | WATCH | OUT_OF_DEPTH | TOO_FEW_SAMPLES
    # feature -> PSI that sampling noise alone reaches (scoring.drift.sampling_noise)
    noise: dict[str, float] = field(default_factory=dict)
    hosts: int = 0

    @property
    def excess(self) -> dict[str, float]:
        """PSI beyond sampling noise: what the level is judged on."""
        return {name: max(psi - self.noise.get(name, 0.0), 0.0) for name, psi in self.psi.items()}

    @property
    def worst(self) -> tuple[str, float]:
        """The feature furthest beyond its noise (then highest PSI), and its PSI."""
        excess = self.excess
        name = max(excess, key=lambda n: (excess[n], self.psi[n]), default="")
        return name, self.psi.get(name, 0.0)

    @property
    def label(self) -> str:
        return LEVEL_LABEL[self.level]


def drift_level(psi: dict[str, float]) -> str:
    """The level of the worst feature (PSI beyond noise): one far off is enough to distrust."""
    worst = max(psi.values(), default=0.0)
    if worst >= DRIFT_ALERT:
        return OUT_OF_DEPTH
    if worst >= DRIFT_WARNING:
        return WATCH
    return OK


def recent_features(now: datetime) -> tuple[np.ndarray, list[str]]:
    """The feature matrix of the last DRIFT_WINDOW's samples, newest DRIFT_MAX_SAMPLES,
    and each row's host (a host's samples move together: see scoring.drift)."""
    # Plain tuples, not model instances: a scrape reads up to 20,000 rows.
    rows = (
        MetricSample.objects.filter(received_at__gte=now - DRIFT_WINDOW)
        .order_by("-received_at")
        .values_list(
            "host_id",
            "taken_at",
            "disk_usage",
            "memory_usage",
            "cpu_usage",
            "dns_latency_ms",
            "firewall_change_requested",
        )[:DRIFT_MAX_SAMPLES]
    )
    readings = [
        Reading(
            host=str(host_id),
            taken_at=taken_at,
            disk_usage=disk,
            memory_usage=memory,
            cpu_usage=cpu,
            dns_latency_ms=dns,
            firewall_change_requested=int(firewall),
        )
        for host_id, taken_at, disk, memory, cpu, dns, firewall in rows
    ]
    return build_features(readings), [reading.host for reading in readings]


def drift_report(
    version: int, reference: dict, X: np.ndarray, hosts: Sequence[str] | None = None
) -> DriftReport:
    """PSI per feature of X against a training `reference` (scoring.drift), its sampling
    noise given each row's host (`hosts`; None: rows independent), and the level."""
    n_hosts = len(set(hosts)) if hosts is not None else len(X)
    if len(X) < DRIFT_MIN_SAMPLES or not reference:
        return DriftReport(version, len(X), {}, TOO_FEW_SAMPLES, hosts=n_hosts)
    psi = population_stability_index(reference, X, FEATURE_NAMES)
    noise = sampling_noise(reference, X, FEATURE_NAMES, hosts)
    report = DriftReport(
        version,
        len(X),
        {name: round(value, 4) for name, value in psi.items()},
        OK,
        {name: round(value, 4) for name, value in noise.items()},
        n_hosts,
    )
    # Thresholds apply beyond noise: few hosts make PSI large without any shift.
    return replace(report, level=drift_level(report.excess))


def model_drift(version: ModelVersion, now: datetime) -> DriftReport:
    """PSI per feature of the last day's samples against `version`'s training distribution."""
    X, hosts = recent_features(now)
    return drift_report(version.version, version.feature_distribution, X, hosts)


def serving_drift(now: datetime) -> DriftReport | None:
    """The drift of the approved version; None when no version is approved."""
    version = ModelVersion.objects.filter(status=ModelStatus.APPROVED).first()
    return model_drift(version, now) if version else None
