"""Who hears of committed audit events: subscribers registered once at startup.

The audit log is the bottom layer; it does not know who listens. The live console
(governance.console.live) and the notices (governance.notices) subscribe in
GovernanceConfig.ready(), so the log imports neither of them.
"""

from collections.abc import Callable, Sequence
from typing import Any

Subscriber = Callable[[Sequence[Any]], object]

_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call `subscriber` with each transaction's audit rows once they have committed."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def subscribers() -> tuple[Subscriber, ...]:
    return tuple(_subscribers)
