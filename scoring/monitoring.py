"""Is a model out of its depth? Drift of recent samples against its training data.

Read by the ModelVersion admin and exported at /metrics (config/metrics.py).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from scoring.choices import ModelStatus
from scoring.drift import DRIFT_ALERT, DRIFT_WARNING, population_stability_index
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

    @property
    def worst(self) -> tuple[str, float]:
        return max(self.psi.items(), key=lambda item: item[1], default=("", 0.0))

    @property
    def label(self) -> str:
        return LEVEL_LABEL[self.level]


def drift_level(psi: dict[str, float]) -> str:
    """The level of the worst feature: one feature far off is enough to distrust the model."""
    worst = max(psi.values(), default=0.0)
    if worst >= DRIFT_ALERT:
        return OUT_OF_DEPTH
    if worst >= DRIFT_WARNING:
        return WATCH
    return OK


def recent_features(now: datetime) -> np.ndarray:
    """The feature matrix of the last DRIFT_WINDOW's samples, newest DRIFT_MAX_SAMPLES."""
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
    return build_features(readings)


def drift_report(version: int, reference: dict, X: np.ndarray) -> DriftReport:
    """PSI per feature of X against a training `reference` (scoring.drift), and its level."""
    if len(X) < DRIFT_MIN_SAMPLES or not reference:
        return DriftReport(version, len(X), {}, TOO_FEW_SAMPLES)
    psi = population_stability_index(reference, X, FEATURE_NAMES)
    psi = {name: round(value, 4) for name, value in psi.items()}
    return DriftReport(version, len(X), psi, drift_level(psi))


def model_drift(version: ModelVersion, now: datetime) -> DriftReport:
    """PSI per feature of the last day's samples against `version`'s training distribution."""
    return drift_report(version.version, version.feature_distribution, recent_features(now))


def serving_drift(now: datetime) -> DriftReport | None:
    """The drift of the approved version; None when no version is approved."""
    version = ModelVersion.objects.filter(status=ModelStatus.APPROVED).first()
    return model_drift(version, now) if version else None
