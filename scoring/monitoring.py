"""Is the serving model out of its depth? Drift of recent samples against its training data."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from scoring.choices import ModelStatus
from scoring.drift import DRIFT_ALERT, DRIFT_WARNING, population_stability_index
from scoring.features import FEATURE_NAMES, Reading, build_features
from scoring.models import MetricSample, ModelVersion

DRIFT_WINDOW = timedelta(hours=24)
DRIFT_MAX_SAMPLES = 20_000
DRIFT_MIN_SAMPLES = 200  # fewer than this says nothing reliable


@dataclass(frozen=True)
class DriftReport:
    version: int
    samples: int
    psi: dict[str, float]  # feature -> population stability index
    level: str  # "ok" | "warning" | "alert" | "too_few_samples"

    @property
    def worst(self) -> tuple[str, float]:
        return max(self.psi.items(), key=lambda item: item[1], default=("", 0.0))


def drift_level(psi: dict[str, float]) -> str:
    worst = max(psi.values(), default=0.0)
    if worst >= DRIFT_ALERT:
        return "alert"
    if worst >= DRIFT_WARNING:
        return "warning"
    return "ok"


def model_drift(version: ModelVersion, now: datetime) -> DriftReport:
    """PSI per feature of the last day's samples against `version`'s training distribution."""
    rows = list(
        MetricSample.objects.filter(received_at__gte=now - DRIFT_WINDOW)
        .select_related("host")
        .order_by("-received_at")[:DRIFT_MAX_SAMPLES]
    )
    if len(rows) < DRIFT_MIN_SAMPLES or not version.feature_distribution:
        return DriftReport(version.version, len(rows), {}, "too_few_samples")
    readings = [
        Reading(
            host=row.host.name,
            taken_at=row.taken_at,
            disk_usage=row.disk_usage,
            memory_usage=row.memory_usage,
            cpu_usage=row.cpu_usage,
            dns_latency_ms=row.dns_latency_ms,
            firewall_change_requested=int(row.firewall_change_requested),
        )
        for row in rows
    ]
    psi = population_stability_index(
        version.feature_distribution, build_features(readings), FEATURE_NAMES
    )
    psi = {name: round(value, 4) for name, value in psi.items()}
    return DriftReport(version.version, len(rows), psi, drift_level(psi))


def serving_drift(now: datetime) -> DriftReport | None:
    version = ModelVersion.objects.filter(status=ModelStatus.APPROVED).first()
    return model_drift(version, now) if version else None
