"""Fixtures of the agent tests: the stand-in server, and agents running in a thread."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.agent.fake_warden import KEY, FakeWarden
from tests.agent.helpers import HealthyMetrics, RecordingExecutor
from warden_agent.agent import Agent
from warden_agent.executor import Executor


@pytest.fixture
def fake() -> Iterator[FakeWarden]:
    server = FakeWarden()
    yield server
    server.close()


@pytest.fixture
def start() -> Iterator[Callable[..., tuple[Agent, threading.Thread]]]:
    """Start an agent in a thread (fast interval and back-off, no start jitter); stopped
    after the test."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start_agent(
        url: str, executor: Executor | None = None, key: str = KEY, **options: Any
    ) -> tuple[Agent, threading.Thread]:
        settings: dict[str, Any] = {
            "interval": 0.05,
            "poll_wait": 0.5,
            "timeout": 2.0,
            "backoff_start": 0.05,
            "backoff_max": 0.1,
            "start_jitter": 0.0,
            **options,
        }
        agent = Agent(
            url, key, "web-01", HealthyMetrics(), executor or RecordingExecutor(), **settings
        )
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread))
        return agent, thread

    yield start_agent
    for stop, _ in running:
        stop.set()
    for _, thread in running:
        thread.join(timeout=5)
        assert not thread.is_alive(), "the agent did not stop when asked"
