"""What the agent tests share: orders as the server sends them, a healthy host, waiting."""

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from warden_agent.argv import argv_digest
from warden_agent.executor import Executor, Order, Outcome
from warden_agent.metrics import make_sample

ALLOWLIST = {
    "fix_it": ["fix-it", "--now"],
    "block_address": ["fw", "block", "--address", "{address:ip}"],
}


def order(
    name: str = "fix_it",
    argv: Sequence[str] | None = None,
    execution_id: int = 7,
    token: int = 3,
    **changes: Any,
) -> dict[str, Any]:
    """An action as GET /api/v1/agent/actions sends it, its argv the allow-list's."""
    argv = list(ALLOWLIST.get(name, ["true"]) if argv is None else argv)
    message = {
        "execution_id": execution_id,
        "token": token,
        "kind": "run",
        "action": name,
        "argv": argv,
        "argv_digest": argv_digest(argv),
        "runbook": "Fix it",
        "ticket_id": "INC-000004",
        "lease_expires_at": "2030-01-01T00:00:00+00:00",
        "lease_seconds": 120,
    }
    message.update(changes)
    return message


class HealthyMetrics:
    def read(self) -> dict[str, Any]:
        return make_sample("web-01", datetime.now(UTC), 45.0, 50.0, 25.0, 18.0, 0)


class RecordingExecutor(Executor):
    """Accepts what the agent's checks accept and records it instead of running it."""

    def __init__(self, allowlist: dict[str, list[str]] | None = None) -> None:
        super().__init__(ALLOWLIST if allowlist is None else allowlist)
        self.ran: list[Order] = []

    def run(self, order: Order) -> Outcome:
        self.ran.append(order)
        return Outcome(True, "fixed", list(order.argv or ()), 0)


def wait_until(condition: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("timed out waiting")
