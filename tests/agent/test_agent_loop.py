"""The agent's two threads against the stand-in server: readings, the allow-list, actions."""

import logging
import threading
import time
from datetime import datetime

import pytest

from tests.agent.fake_warden import KEY, FakeWarden
from tests.agent.helpers import ALLOWLIST, HealthyMetrics, RecordingExecutor, order, wait_until
from warden_agent import __version__
from warden_agent.agent import Agent
from warden_agent.argv import allowlist_digest, argv_digest
from warden_agent.client import Unavailable

FIELDS = {
    "host",
    "taken_at",
    "disk_usage",
    "memory_usage",
    "cpu_usage",
    "dns_latency_ms",
    "firewall_change_requested",
}


# --- readings --------------------------------------------------------------------------


def test_posts_readings_with_the_bearer_key_and_documented_fields(fake, start):
    start(fake.url)

    posts = wait_until(lambda: fake.made("POST", "/api/v1/metrics")[1:])

    for post in posts:
        assert post["auth"] == f"Bearer {KEY}"
        sample = post["body"]
        assert isinstance(sample, dict)  # one sample alone, not a list of one
        assert set(sample) == FIELDS
        assert sample["host"] == "web-01"
        assert datetime.fromisoformat(sample["taken_at"]).tzinfo is not None
        assert sample["firewall_change_requested"] in (0, 1)
        assert all(
            isinstance(sample[f], float)
            for f in FIELDS - {"host", "taken_at"} - {"firewall_change_requested"}
        )
    polls = wait_until(lambda: fake.made("GET", "/api/v1/agent/actions"))
    assert all(float(p["query"]["wait"][0]) == 0.5 for p in polls)


def test_keeps_readings_while_the_server_is_down_and_sends_them_as_one_batch(start):
    fake = FakeWarden(listen=False)
    try:
        agent, _ = start(fake.url)
        wait_until(lambda: len(agent.readings) >= 3)
        fake.start()

        first = wait_until(lambda: fake.made("POST", "/api/v1/metrics"))[0]

        assert isinstance(first["body"], list) and len(first["body"]) >= 3
        stamps = [sample["taken_at"] for sample in first["body"]]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        wait_until(lambda: not agent.readings)
    finally:
        fake.close()


def test_readings_go_on_while_a_post_hangs_and_each_arrives_once_afterwards(fake, start):
    # given a server that takes a post of readings and never answers it
    fake.hang_metrics.set()
    agent, _ = start(fake.url, interval=0.05, timeout=0.5)
    wait_until(lambda: fake.hung)

    # then readings go on being taken on schedule meanwhile, kept until acknowledged
    wait_until(lambda: len(agent.readings) >= 20)
    assert len(fake.hung) <= 3  # the hanging posts, retried with back-off

    # when the server answers again, every reading kept arrives, oldest first, none twice
    held = [sample["taken_at"] for sample in agent.readings.oldest(len(agent.readings))]
    fake.hang_metrics.clear()
    wait_until(lambda: set(held) <= {sample["taken_at"] for sample in fake.samples()})
    arrived = [sample["taken_at"] for sample in fake.samples()]
    assert arrived[: len(held)] == held
    assert len(arrived) == len(set(arrived))


def test_keeps_readings_while_the_server_has_no_model_and_drops_a_refused_batch(fake):
    agent = Agent(fake.url, KEY, "web-01", HealthyMetrics(), RecordingExecutor())
    fake.metrics_status = 503
    for _ in range(2):
        agent.collect()
        with pytest.raises(Unavailable):
            agent.flush()
    assert len(agent.readings) == 2

    fake.metrics_status = 400  # never valid: dropped, not retried for ever
    agent.flush()
    assert not agent.readings
    assert len(fake.made("POST", "/api/v1/metrics")[-1]["body"]) == 2

    fake.metrics_status = 201
    agent.collect()
    agent.flush()
    assert isinstance(fake.made("POST", "/api/v1/metrics")[-1]["body"], dict)
    assert not agent.readings


def test_a_backlog_goes_oldest_first_in_batches_the_server_takes(fake):
    agent = Agent(fake.url, KEY, "web-01", HealthyMetrics(), RecordingExecutor(), batch_size=4)
    for _ in range(10):
        agent.collect()

    agent.flush()

    sizes = [len(r["body"]) for r in fake.made("POST", "/api/v1/metrics")]
    assert sizes == [4, 4, 2]
    stamps = [s["taken_at"] for s in fake.samples()]
    assert stamps == sorted(stamps) and len(stamps) == 10
    assert not agent.readings


def test_a_full_spool_drops_the_oldest_with_one_warning_naming_how_many(fake, caplog):
    caplog.set_level(logging.WARNING, logger="warden.agent")
    agent = Agent(fake.url, KEY, "web-01", HealthyMetrics(), RecordingExecutor(), spool_limit=3)
    for _ in range(7):
        agent.collect()
    assert len(agent.readings) == 3

    agent.flush()
    agent._log_dropped()  # what the readings thread does once the server answers

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("spool full (3 readings)" in w for w in warnings) == 1
    assert sum("dropped the 4 oldest reading(s)" in w for w in warnings) == 1
    assert len(fake.samples()) == 3


def test_the_first_post_and_poll_wait_a_random_part_of_the_start_jitter(fake, start, monkeypatch):
    bounds: list[tuple[float, float]] = []

    def longest(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    monkeypatch.setattr("warden_agent.agent.random.uniform", longest)
    began = time.monotonic()
    start(fake.url, start_jitter=0.6)

    wait_until(lambda: fake.made("POST", "/api/v1/metrics") and fake.made("PUT", "/api/"))

    assert time.monotonic() - began >= 0.6
    assert bounds[:2] == [(0.0, 0.6), (0.0, 0.6)]


def test_the_start_jitter_spans_the_time_between_posts_up_to_a_minute(fake):
    def jitter(interval: float, post_every: float | None = None) -> float:
        return Agent(
            fake.url,
            KEY,
            "h",
            HealthyMetrics(),
            RecordingExecutor(),
            interval=interval,
            post_every=post_every,
        ).start_jitter

    assert jitter(5.0) == 5.0  # each reading posted at once
    # readings every 10 s posted once a minute: 10,000 hosts start over the minute
    assert jitter(10.0, post_every=60.0) == 60.0
    assert jitter(10.0, post_every=300.0) == 60.0


# --- the allow-list --------------------------------------------------------------------


def test_sends_its_allow_list_before_it_polls(fake, start):
    start(fake.url)

    wait_until(lambda: fake.made("GET", "/api/v1/agent/actions"))

    (put,) = fake.made("PUT", "/api/v1/agent/allowlist")
    assert put["auth"] == f"Bearer {KEY}"
    assert put["body"] == {
        "entries": ALLOWLIST,
        "digest": allowlist_digest(ALLOWLIST),
        "agent_version": __version__,
    }
    agent_calls = [r for r in fake.requests if r["path"].startswith("/api/v1/agent")]
    assert (agent_calls[0]["method"], agent_calls[0]["path"]) == ("PUT", "/api/v1/agent/allowlist")


def test_retries_the_allow_list_with_back_off_until_the_server_answers(fake, start):
    fake.allowlist_status = 503
    start(fake.url)
    wait_until(lambda: len(fake.made("PUT", "/api/v1/agent/allowlist")) >= 2)
    assert not fake.made("GET", "/api/v1/agent/actions")

    fake.allowlist_status = 200
    wait_until(lambda: fake.made("GET", "/api/v1/agent/actions"))
    assert fake.held["digest"] == allowlist_digest(ALLOWLIST)


def test_an_older_server_without_allow_lists_is_logged_once_and_the_agent_goes_on(
    fake, start, caplog
):
    caplog.set_level(logging.INFO, logger="warden.agent")
    fake.allowlist_status = 404
    start(fake.url)

    wait_until(lambda: len(fake.made("GET", "/api/v1/agent/actions")) >= 2)

    assert len(fake.made("PUT", "/api/v1/agent/allowlist")) == 1
    assert caplog.text.count("does not take allow-lists") == 1


# --- actions ---------------------------------------------------------------------------


def test_runs_an_allow_listed_action_and_reports_it_with_its_token(fake, start, caplog):
    caplog.set_level(logging.INFO, logger="warden.agent")
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(order("fix_it", execution_id=7, token=3))

    (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/"))

    assert report["path"] == "/api/v1/agent/actions/7/result"
    assert report["auth"] == f"Bearer {KEY}"
    assert report["body"] == {
        "token": 3,
        "ok": True,
        "output": "fixed",
        "argv": ["fix-it", "--now"],
        "argv_digest": argv_digest(["fix-it", "--now"]),
        "exit_code": 0,
    }
    assert [o.action for o in executor.ran] == ["fix_it"]
    assert "web-01: ran fix_it -> ok" in caplog.text


def test_refuses_an_action_that_is_not_allow_listed_without_running_it(fake, start):
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(order("drop_database", ["dropdb", "app"], execution_id=8, token=1))

    (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/"))

    assert report["path"] == "/api/v1/agent/actions/8/result"
    assert report["body"] == {
        "token": 1,
        "ok": False,
        "output": "action drop_database is not allow-listed on this agent",
        "argv": [],
        "argv_digest": "",
        "exit_code": None,
    }
    assert executor.ran == []


def test_an_action_delivered_again_is_not_run_twice(fake, start):
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(order("fix_it", execution_id=9, token=2))
    wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/9/result"))

    fake.give(order("fix_it", execution_id=9, token=2))
    wait_until(lambda: len(fake.made("GET", "/api/v1/agent/actions")) >= 4)

    assert len(executor.ran) == 1


def test_a_409_on_the_report_is_not_retried(fake, start):
    fake.result_status = 409
    agent, thread = start(fake.url)
    fake.give(order("fix_it"))

    wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/"))
    time.sleep(0.3)  # several more cycles

    assert len(fake.made("POST", "/api/v1/agent/actions/")) == 1
    assert not agent.results
    assert thread.is_alive()


def test_a_report_the_server_cannot_take_now_is_kept_and_sent_again(fake, start):
    fake.result_status = 503
    executor = RecordingExecutor()
    agent, _ = start(fake.url, executor)
    fake.give(order("fix_it", execution_id=5))
    wait_until(lambda: len(fake.made("POST", "/api/v1/agent/actions/5/result")) >= 2)
    assert len(agent.results) == 1

    fake.result_status = 200
    wait_until(lambda: not agent.results)

    bodies = [r["body"] for r in fake.made("POST", "/api/v1/agent/actions/5/result")]
    assert all(body == bodies[0] for body in bodies)
    assert len(executor.ran) == 1  # reported again, never run again


def test_a_401_stops_the_agent(fake, start):
    agent, thread = start(fake.url, key="wrong-key")

    thread.join(timeout=3)

    assert not thread.is_alive()
    assert "401" in agent.error
    assert len(fake.made("POST", "/api/v1/metrics")) <= 1  # no hammering with a bad key
    assert len(fake.made("PUT", "/api/v1/agent/allowlist")) <= 1


def test_on_stop_a_running_action_finishes_and_is_reported(fake):
    release = threading.Event()

    class SlowExecutor(RecordingExecutor):
        def run(self, order):
            release.wait(5)
            return super().run(order)

    agent = Agent(
        fake.url, KEY, "web-01", HealthyMetrics(), SlowExecutor(), poll_wait=0.5, start_jitter=0
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    fake.give(order("fix_it", execution_id=11))
    wait_until(agent.busy.locked)

    stop.set()
    time.sleep(0.2)
    assert thread.is_alive()  # waiting for the action, not gone without its report
    release.set()
    thread.join(timeout=5)

    assert not thread.is_alive()
    (report,) = fake.made("POST", "/api/v1/agent/actions/11/result")
    assert report["body"]["ok"] is True
