"""When to try again: back-off after failures, and the next tick of a schedule."""

from __future__ import annotations

import random
import time


class Backoff:
    """Wait longer after each failure, from `start` doubling up to `most`, jittered for fleets."""

    def __init__(self, start: float, most: float) -> None:
        self.start, self.most = start, most
        self.delay = 0.0
        self.retry_at = 0.0

    def failed(self, exc: Exception) -> str:
        """Schedule the next try; returns what to warn about."""
        self.delay = min(self.delay * 2, self.most) if self.delay else self.start
        self.retry_at = time.monotonic() + self.delay * random.uniform(0.8, 1.0)
        return f"server unavailable ({exc}); keeping readings and results, retrying with back-off"

    def reset(self) -> bool:
        """Back to normal; True if it had been backing off."""
        was, self.delay, self.retry_at = self.delay, 0.0, 0.0
        return bool(was)


def next_tick(tick: float, every: float, now: float) -> float:
    """The next tick after `tick`; after falling behind (a slow action), now + every: no burst."""
    tick += every
    return tick if tick > now else now + every
