"""Turns metric readings into the severity model's feature matrix.

One matrix per request: rows in the order the readings were given, columns in
FEATURE_NAMES order. Pure: no ORM, no clock.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

METRIC_NAMES: tuple[str, ...] = (
    "disk_usage",
    "memory_usage",
    "cpu_usage",
    "dns_latency_ms",
    "firewall_change_requested",
)
# Change since the same host's previous reading: a disk filling fast is worse
# than one that has sat at 80% for a month.
DELTA_NAMES: tuple[str, ...] = (
    "disk_usage_delta",
    "memory_usage_delta",
    "cpu_usage_delta",
    "dns_latency_ms_delta",
)
FEATURE_NAMES: tuple[str, ...] = METRIC_NAMES + DELTA_NAMES

# What a healthy host looks like; explanations measure how far the prediction
# moves when a feature is put back to this value.
HEALTHY_BASELINE: Mapping[str, float] = {
    "disk_usage": 45.0,
    "memory_usage": 50.0,
    "cpu_usage": 30.0,
    "dns_latency_ms": 20.0,
    "firewall_change_requested": 0.0,
    "disk_usage_delta": 0.0,
    "memory_usage_delta": 0.0,
    "cpu_usage_delta": 0.0,
    "dns_latency_ms_delta": 0.0,
}

# The ticket category each feature speaks for.
FEATURE_CATEGORY: Mapping[str, str] = {
    "disk_usage": "disk",
    "disk_usage_delta": "disk",
    "memory_usage": "memory",
    "memory_usage_delta": "memory",
    "cpu_usage": "cpu",
    "cpu_usage_delta": "cpu",
    "dns_latency_ms": "dns",
    "dns_latency_ms_delta": "dns",
    "firewall_change_requested": "firewall",
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One metric sample as the agent reported it."""

    host: str
    taken_at: datetime
    disk_usage: float
    memory_usage: float
    cpu_usage: float
    dns_latency_ms: float
    firewall_change_requested: int

    def metrics(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, name)) for name in METRIC_NAMES)


def build_features(
    readings: Sequence[Reading], previous: Mapping[str, Reading] | None = None
) -> np.ndarray:
    """Return an (n, len(FEATURE_NAMES)) float64 matrix for `readings`.

    A reading's deltas are taken against the same host's latest earlier
    reading: one in `readings` itself, else `previous[host]` (the last stored
    sample), else zero for a host seen for the first time.
    """
    previous = previous or {}
    n_metrics = len(METRIC_NAMES)
    matrix = np.zeros((len(readings), len(FEATURE_NAMES)), dtype=np.float64)
    if not readings:
        return matrix
    matrix[:, :n_metrics] = [reading.metrics() for reading in readings]
    order = sorted(range(len(readings)), key=lambda i: (readings[i].host, readings[i].taken_at))
    last_seen: dict[str, np.ndarray] = {
        host: np.asarray(reading.metrics(), dtype=np.float64) for host, reading in previous.items()
    }
    n_deltas = len(DELTA_NAMES)
    for i in order:
        current = matrix[i, :n_metrics]
        before = last_seen.get(readings[i].host)
        if before is not None:
            matrix[i, n_metrics:] = current[:n_deltas] - before[:n_deltas]
        last_seen[readings[i].host] = current.copy()
    return matrix
