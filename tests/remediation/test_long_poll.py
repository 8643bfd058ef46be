"""The agent's long poll as the live process serves it: the ASGI app, on a real event loop.

The embedded mode's wake-ups (the database watched every 0.2 s) run here on SQLite;
tests/integration runs the Redis ones through nginx and the real servers.
"""

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from remediation.api import long_poll
from remediation.models import Execution, Host
from remediation.wakeups import Waiters

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch, settings) -> None:
    """Each test is a freshly started live process in the embedded mode."""
    settings.REDIS_URL = ""
    monkeypatch.setattr(long_poll, "waiters", Waiters())
    monkeypatch.setattr(long_poll, "known_keys", long_poll.KnownKeys())


def poll_scope(key: str, query: str = "wait=5", method: str = "GET", host: bytes = b"testserver"):
    return {
        "type": "http",
        "method": method,
        "path": long_poll.PATH,
        "query_string": query.encode(),
        "headers": [(b"host", host), (b"authorization", f"Bearer {key}".encode())],
    }


async def answer(communicator: ApplicationCommunicator, timeout: float) -> tuple[int, Any, dict]:
    start = await communicator.receive_output(timeout)
    body = await communicator.receive_output(timeout)
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], json.loads(body["body"]), headers


def start_poll(scope: dict) -> ApplicationCommunicator:
    communicator = ApplicationCommunicator(long_poll.long_poll_app, scope)
    communicator.input_queue.put_nowait({"type": "http.request", "body": b""})
    assert communicator.future  # started now, not when first read
    return communicator


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_ready_action_is_answered_at_once(agent):
    agent.post_metrics(agent.sample("disk"))  # auto-healed: an action waits for the agent

    async def scenario():
        status, body, _ = await answer(start_poll(poll_scope(agent.key)), timeout=3)
        return status, body

    status, body = run(scenario())
    assert status == 200
    [action] = body["actions"]
    assert action["action"] == "clean_temp_and_rotate_logs"
    assert Execution.objects.get().state == "claimed"  # for this agent, to say it started


def test_a_waiting_poll_is_woken_by_a_decision(agent):
    async def scenario():
        loop = asyncio.get_running_loop()
        communicator = start_poll(poll_scope(agent.key, "wait=20"))
        assert await communicator.receive_nothing(timeout=0.5), "nothing ready: it waits"
        # A problem decided elsewhere (here, a thread standing in for a web worker)
        await asyncio.to_thread(agent.post_metrics, agent.sample("disk"))
        decided = loop.time()
        status, body, _ = await answer(communicator, timeout=10)
        return status, body, loop.time() - decided

    status, body, _ = run(scenario())
    assert status == 200
    assert [a["action"] for a in body["actions"]] == ["clean_temp_and_rotate_logs"]


def test_an_idle_poll_answers_empty_when_its_wait_runs_out(agent):
    async def scenario():
        communicator = start_poll(poll_scope(agent.key, "wait=0.6"))
        assert await communicator.receive_nothing(timeout=0.3)
        return await answer(communicator, timeout=3)

    status, body, _ = run(scenario())
    assert (status, body) == (200, {"actions": []})


def test_waiting_polls_hold_no_thread(agent, other_agent):
    keys = [agent.key, other_agent.key] * 20

    async def scenario():
        communicators = [start_poll(poll_scope(key, "wait=5")) for key in keys]
        for _ in range(40):  # until every poll has looked and is waiting
            if long_poll.waiters.count == len(keys):
                break
            await asyncio.sleep(0.1)
        waiting_threads = threading.active_count()
        waiting = long_poll.waiters.count
        answers = [await answer(c, timeout=8) for c in communicators]
        return waiting_threads, waiting, answers

    before = threading.active_count()
    waiting_threads, waiting, answers = run(scenario())
    assert waiting == len(keys)
    # The loop's shared pool may have started a few threads for the first looks; 40
    # polls waiting hold none of their own.
    assert waiting_threads - before < 10
    assert all(status == 200 and body == {"actions": []} for status, body, _ in answers)


def test_a_poll_whose_agent_goes_away_is_dropped_and_claims_nothing(agent):
    async def scenario():
        communicator = start_poll(poll_scope(agent.key, "wait=20"))
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=2)  # the app returns without answering
        return long_poll.waiters.count

    assert run(scenario()) == 0
    agent.post_metrics(agent.sample("disk"))
    assert Execution.objects.get().state != "running", "left for the agent's next poll"


@pytest.mark.parametrize(
    ("scope_changes", "status", "code"),
    [
        ({"key": "not-a-key"}, 401, None),
        ({"query": "wait=soon"}, 400, "wait"),
        ({"query": "wait=3600"}, 400, "wait"),
        ({"method": "POST"}, 405, None),
        ({"host": b"evil.example"}, 400, None),
    ],
)
def test_bad_polls_get_a_clear_error(agent, scope_changes, status, code):
    changes = {"key": agent.key, **scope_changes}

    async def scenario():
        return await answer(start_poll(poll_scope(**changes)), timeout=3)

    got_status, body, headers = run(scenario())
    assert got_status == status
    assert body["error"]["message"]
    if code:
        assert code in body["error"]["fields"]
    if status == 405:
        assert headers["allow"] == "GET"
    if status == 401:
        assert "www-authenticate" in headers


def test_a_database_gone_mid_poll_is_a_json_503_with_retry_after(agent, monkeypatch):
    # given the database refusing connections when the poll looks (PostgreSQL restarting)
    from django.db import OperationalError

    def refused(*args, **kwargs):
        raise OperationalError("connection failed: Connection refused")

    monkeypatch.setattr(long_poll, "start_poll", refused)

    async def scenario():
        return await answer(start_poll(poll_scope(agent.key, "wait=5")), timeout=3)

    # when the agent polls, then it hears to come back, in the API's shape
    status, body, headers = run(scenario())
    assert status == 503
    assert body["error"]["code"] == "database_unavailable"
    assert headers["content-type"] == "application/json"
    assert int(headers["retry-after"]) > 0


def test_first_polls_arriving_together_are_authenticated_in_one_query(
    agent, other_agent, monkeypatch
):
    # given a fresh live process (no key known) and two agents polling at once, twice each
    lookups = []
    look_up = long_poll.hosts_by_key_hashes

    def counted(key_hashes):
        lookups.append(len(key_hashes))
        return look_up(key_hashes)

    monkeypatch.setattr(long_poll, "hosts_by_key_hashes", counted)
    keys = [agent.key, other_agent.key] * 2

    async def scenario():
        first = [start_poll(poll_scope(key, "wait=0")) for key in keys]
        answers = [await answer(c, timeout=5) for c in first]
        # renewals of known keys look nothing up
        again = [start_poll(poll_scope(key, "wait=0")) for key in keys]
        return answers + [await answer(c, timeout=5) for c in again]

    # when
    answers = run(scenario())

    # then
    assert [status for status, _, _ in answers] == [200] * 8
    assert lookups == [2]


def test_a_disabled_host_or_replaced_key_is_refused_at_its_first_poll(agent, other_agent):
    # given one host disabled and the other's key replaced since the keys were issued
    Host.objects.filter(pk=agent.host.pk).update(enabled=False)
    Host.objects.filter(pk=other_agent.host.pk).update(api_key_hash="0" * 64)

    async def scenario():
        polls = [start_poll(poll_scope(key, "wait=0")) for key in (agent.key, other_agent.key)]
        return [await answer(c, timeout=5) for c in polls]

    # when
    [(disabled, disabled_body, _), (replaced, replaced_body, _)] = run(scenario())

    # then
    assert (disabled, disabled_body["error"]["message"]) == (401, "Host web-01 is disabled.")
    assert (replaced, replaced_body["error"]["message"]) == (401, "Unknown API key.")
