"""Readings: one sample of a host's metrics, as POST /api/v1/metrics takes it."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psutil

log = logging.getLogger("warden.agent")

Sample = dict[str, Any]

DEFAULT_FLAG_FILE = "/var/lib/warden-agent/firewall-change-requested"
# A failed lookup is reported as at least this slow: the host's DNS is broken.
DNS_FAILURE_MS = 5_000.0


def make_sample(
    host: str,
    taken_at: datetime,
    disk_usage: float,
    memory_usage: float,
    cpu_usage: float,
    dns_latency_ms: float,
    firewall_change_requested: int,
) -> Sample:
    """One reading as the metrics API wants it."""
    return {
        "host": host,
        "taken_at": taken_at.isoformat(),
        "disk_usage": round(float(disk_usage), 2),
        "memory_usage": round(float(memory_usage), 2),
        "cpu_usage": round(float(cpu_usage), 2),
        "dns_latency_ms": round(float(dns_latency_ms), 3),
        "firewall_change_requested": 1 if firewall_change_requested else 0,
    }


def summarize(results: Iterable[Mapping[str, Any]]) -> str:
    """ "AUTO_HEAL INC-000004" per distinct decision and ticket, in order."""
    parts: list[str] = []
    for result in results:
        part = str(result.get("decision", "?"))
        if result.get("ticket_id"):
            part += f" {result['ticket_id']}"
        if part not in parts:
            parts.append(part)
    return ", ".join(parts) or "no results"


class MetricsSource(Protocol):
    def read(self) -> Sample: ...


class SystemMetrics:
    """This machine's metrics, from psutil."""

    def __init__(
        self,
        host: str,
        disk_path: str = "/",
        dns_name: str = "localhost",
        flag_file: str = DEFAULT_FLAG_FILE,
    ) -> None:
        self.host = host
        self.disk_path = disk_path
        self.dns_name = dns_name
        self.flag_file = Path(flag_file)
        # cpu_percent(interval=None) measures since its previous call; the first says 0.0.
        psutil.cpu_percent(interval=None)

    def dns_latency_ms(self) -> float:
        # getaddrinfo has no timeout of its own: a dead resolver stalls this reading for
        # the resolver's timeout, which is itself worth reporting.
        started = time.perf_counter()
        try:
            socket.getaddrinfo(self.dns_name, None)
        except OSError as exc:
            log.warning("%s: cannot resolve %s: %s", self.host, self.dns_name, exc)
            return max((time.perf_counter() - started) * 1000, DNS_FAILURE_MS)
        return (time.perf_counter() - started) * 1000

    def read(self) -> Sample:
        return make_sample(
            self.host,
            datetime.now(UTC),
            psutil.disk_usage(self.disk_path).percent,
            psutil.virtual_memory().percent,
            psutil.cpu_percent(interval=None),
            self.dns_latency_ms(),
            int(self.flag_file.exists()),
        )
