"""The agent says it is starting an order before it runs it, and runs it only once Warden
answers that it may; an order it does not start is reported not started, so Warden offers
it again rather than judge, roll back or count an action that never ran."""

import json
import threading

from tests.agent.fake_warden import KEY
from tests.agent.helpers import HealthyMetrics, RecordingExecutor, order, wait_until
from warden_agent.agent import NEVER_STARTED, Agent
from warden_agent.spool import ResultSpool


def acked(**changes):
    """An order from a Warden that waits to hear it started."""
    return order("fix_it", start_within_seconds=20, **changes)


def calls(fake, execution_id=7):
    """The agent's requests about one execution, in order: started, result."""
    prefix = f"/api/v1/agent/actions/{execution_id}/"
    return [r["path"].removeprefix(prefix) for r in fake.made("POST", prefix)]


def test_says_it_started_before_it_runs_then_reports(fake, start):
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(acked(execution_id=7, token=3))

    wait_until(lambda: "result" in calls(fake))

    assert calls(fake) == ["started", "result"]
    (said,) = fake.made("POST", "/api/v1/agent/actions/7/started")
    assert said["body"] == {"token": 3}
    assert said["auth"] == f"Bearer {KEY}"
    assert len(executor.ran) == 1


def test_an_order_warden_says_not_to_start_is_not_run_and_reported_not_started(fake, start):
    fake.started_status = 409
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(acked(execution_id=7, token=3))

    (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/7/result"))

    assert executor.ran == []
    assert report["body"]["not_started"] is True
    assert report["body"]["ok"] is False
    assert report["body"]["argv"] == []
    assert "Warden answered not to start it" in report["body"]["output"]


def test_an_order_offered_again_after_it_was_not_started_runs_once(fake, start):
    fake.started_status = 409
    executor = RecordingExecutor()
    agent, _ = start(fake.url, executor)
    fake.give(acked(execution_id=7, token=3))
    wait_until(lambda: "result" in calls(fake) and not agent.results)

    # when Warden offers it again, the same token, and answers that it may start now
    fake.started_status = 200
    fake.give(acked(execution_id=7, token=3))
    wait_until(lambda: calls(fake).count("result") == 2)

    assert len(executor.ran) == 1


def test_a_start_unanswered_is_said_again_and_the_order_runs_once(fake, start):
    fake.started_status = 503  # the database is away: Warden cannot answer yet
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(acked(execution_id=7, token=3))
    wait_until(lambda: calls(fake).count("started") >= 3)
    assert executor.ran == []

    fake.started_status = 200
    wait_until(lambda: "result" in calls(fake))

    assert len(executor.ran) == 1
    assert {r["body"]["token"] for r in fake.made("POST", "/api/v1/agent/actions/7/started")} == {3}


def test_a_start_taken_whose_answer_was_lost_is_said_again_and_runs_once(fake, start):
    fake.lose_started_answers = 2
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(acked(execution_id=7, token=3))

    wait_until(lambda: "result" in calls(fake))

    assert calls(fake) == ["started", "started", "started", "result"]
    assert len(executor.ran) == 1


def test_a_start_never_answered_within_the_lease_is_not_run(fake, start):
    fake.started_status = 503
    executor = RecordingExecutor()
    start(fake.url, executor)
    fake.give(acked(execution_id=7, token=3, lease_seconds=5.5))  # 0.5 s to hear back

    (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/7/result"))

    assert executor.ran == []
    assert report["body"]["not_started"] is True
    assert "lease ran out" in report["body"]["output"]


def test_an_order_taken_but_not_started_before_a_restart_is_reported_not_started(fake, tmp_path):
    # given an agent that died between taking an order and starting it
    ResultSpool(tmp_path).put(
        "7:3", {"execution_id": 7, "token": 3, "action": "fix_it", "state": "starting"}
    )

    # when it starts again
    executor = RecordingExecutor()
    agent = Agent(
        fake.url, KEY, "web-01", HealthyMetrics(), executor, spool_dir=tmp_path, start_jitter=0
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        (report,) = wait_until(lambda: fake.made("POST", "/api/v1/agent/actions/7/result"))
    finally:
        stop.set()
        thread.join(timeout=5)

    # then it reports it never started it, and ran nothing
    assert report["body"]["not_started"] is True
    assert report["body"]["token"] == 3
    assert report["body"]["output"] == NEVER_STARTED
    assert executor.ran == []
    assert json.loads(json.dumps(report["body"]))["argv"] == []
