"""The spool: readings and results survive restarts and crashes, within a bound."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.agent.fake_warden import KEY, FakeWarden
from tests.agent.helpers import HealthyMetrics, RecordingExecutor, order, wait_until
from warden_agent.agent import INTERRUPTED, Agent
from warden_agent.argv import argv_digest
from warden_agent.spool import ReadingSpool, ResultSpool


def reading(n: int) -> dict:
    return {"host": "web-01", "n": n}


def numbers(spool: ReadingSpool) -> list[int]:
    return [sample["n"] for sample in spool.oldest(len(spool))]


# --- readings --------------------------------------------------------------------------


@pytest.mark.parametrize("on_disk", [True, False], ids=["disk", "memory"])
def test_keeps_readings_oldest_first_until_removed(tmp_path, on_disk):
    spool = ReadingSpool(tmp_path if on_disk else None)
    for n in range(5):
        assert spool.append(reading(n)) == 0

    assert spool.oldest(2) == [reading(0), reading(1)]
    assert len(spool) == 5  # looking does not remove
    spool.remove_oldest(2)
    assert numbers(spool) == [2, 3, 4]


def test_memory_only_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spool = ReadingSpool(None)
    spool.append(reading(1))
    assert list(tmp_path.iterdir()) == []


def test_readings_survive_a_restart_and_acknowledged_ones_do_not(tmp_path):
    spool = ReadingSpool(tmp_path)
    for n in range(6):
        spool.append(reading(n))
    spool.remove_oldest(4)  # the server acknowledged these
    spool.close()

    again = ReadingSpool(tmp_path)

    assert numbers(again) == [4, 5]
    again.append(reading(6))
    again.close()
    assert numbers(ReadingSpool(tmp_path)) == [4, 5, 6]


def test_past_its_limit_the_oldest_go_and_the_bound_holds_across_restarts(tmp_path):
    spool = ReadingSpool(tmp_path, limit=5, segment_size=2)
    dropped = [spool.append(reading(n)) for n in range(8)]
    spool.close()

    assert dropped == [0, 0, 0, 0, 0, 1, 1, 1]
    assert numbers(spool) == [3, 4, 5, 6, 7]
    assert numbers(ReadingSpool(tmp_path, limit=5)) == [3, 4, 5, 6, 7]


def test_a_lower_limit_at_start_drops_the_excess_with_one_warning(tmp_path, caplog):
    spool = ReadingSpool(tmp_path)
    for n in range(10):
        spool.append(reading(n))
    spool.close()
    caplog.set_level(logging.WARNING, logger="warden.agent")

    smaller = ReadingSpool(tmp_path, limit=4)

    assert numbers(smaller) == [6, 7, 8, 9]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "held 10 readings, more than its limit 4: dropped the oldest 6" in warning


def test_acknowledged_segments_are_deleted_so_the_spool_does_not_grow(tmp_path):
    spool = ReadingSpool(tmp_path, segment_size=3)
    for round_ in range(20):
        for n in range(3):
            spool.append(reading(round_ * 3 + n))
        spool.remove_oldest(3)
    spool.close()

    files = sorted(p.name for p in (tmp_path / "readings").iterdir())
    assert len(files) <= 3, files  # the last segment and the acked mark, not 20 segments
    assert len(ReadingSpool(tmp_path)) == 0


def test_a_torn_last_line_loses_only_that_reading(tmp_path, caplog):
    spool = ReadingSpool(tmp_path)
    for n in range(3):
        spool.append(reading(n))
    spool.close()
    (segment,) = (tmp_path / "readings").glob("*.jsonl")
    with open(segment, "ab") as file:
        file.write(b'{"seq":4,"sample":{"host":"web-0')  # the crash came mid-write
    caplog.set_level(logging.WARNING, logger="warden.agent")

    again = ReadingSpool(tmp_path)
    again.append(reading(3))
    again.close()

    assert numbers(again) == [0, 1, 2, 3]
    assert "skipped 1 torn or unreadable line(s)" in caplog.text
    assert numbers(ReadingSpool(tmp_path)) == [0, 1, 2, 3]  # the new run's line is whole


def test_a_damaged_line_costs_that_reading_not_the_rest(tmp_path):
    spool = ReadingSpool(tmp_path)
    for n in range(3):
        spool.append(reading(n))
    spool.close()
    (segment,) = (tmp_path / "readings").glob("*.jsonl")
    lines = segment.read_bytes().split(b"\n")
    lines[1] = b"\x00\x00garbage"
    segment.write_bytes(b"\n".join(lines))

    again = ReadingSpool(tmp_path)

    assert numbers(again) == [0, 2]
    assert again.skipped == 1


WRITER = """
import sys
from warden_agent.spool import ReadingSpool
spool = ReadingSpool(sys.argv[1], segment_size=50)
n = 0
while True:
    spool.append({"host": "web-01", "n": n, "padding": "x" * 2000})
    print(n, flush=True)
    n += 1
"""


def test_a_process_killed_while_writing_leaves_a_spool_that_loads(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    written = []
    for line in writer.stdout:
        written.append(int(line))
        if len(written) >= 120:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    reported = max(written)  # appended and confirmed before the kill

    loaded = numbers(ReadingSpool(tmp_path))

    assert loaded == list(range(len(loaded)))  # in order, none missing in between
    assert len(loaded) - 1 >= reported  # nothing confirmed was lost


FULL_DISK = """
import json, resource, signal, sys
from warden_agent.spool import ReadingSpool
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # as if the disk filled up
spool = ReadingSpool(sys.argv[1])
for n in range(30):
    spool.append({"host": "web-01", "n": n, "padding": "x" * 60})
print(json.dumps([sample["n"] for sample in spool.oldest(100)]))
"""


def fill_disk(tmp_path: Path, file_size_limit: int) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path), str(file_size_limit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == list(range(30))  # all still in memory, to post
    return done


def test_a_disk_that_refuses_every_write_is_logged_once_and_readings_stay_in_memory(tmp_path):
    done = fill_disk(tmp_path, 0)
    assert done.stderr.count("cannot write a reading") == 1  # once, not once per reading
    assert "keeping it in memory" in done.stderr
    assert len(ReadingSpool(tmp_path)) == 0


def test_a_write_that_fails_halfway_costs_that_line_and_never_the_rest(tmp_path):
    done = fill_disk(tmp_path, 1000)  # each segment file fills after a few readings

    loaded = ReadingSpool(tmp_path)

    # each failed write tore one line and ended its segment; the rest load, in order
    assert loaded.skipped >= 1
    assert done.stderr.count("cannot write a reading") == loaded.skipped
    assert numbers(loaded) == sorted(numbers(loaded))
    assert len(loaded) + loaded.skipped == 30


# --- results ---------------------------------------------------------------------------


def test_results_survive_a_restart_in_order_until_removed(tmp_path):
    results = ResultSpool(tmp_path)
    results.put("7:1", {"n": 1})
    results.put("8:1", {"n": 2})
    results.put("7:1", {"n": 3})  # replaced in place: keeps its turn

    again = ResultSpool(tmp_path)
    assert again.items() == [("7:1", {"n": 3}), ("8:1", {"n": 2})]
    again.remove("7:1")
    assert ResultSpool(tmp_path).items() == [("8:1", {"n": 2})]


def test_an_unfinished_or_damaged_result_file_is_dropped_and_the_rest_load(tmp_path, caplog):
    results = ResultSpool(tmp_path)
    results.put("1:1", {"n": 1})
    results.put("2:1", {"n": 2})
    folder = tmp_path / "results"
    (folder / "0000000000000009.json.tmp").write_text('{"key": "9:1", "rec')
    sorted(folder.glob("*.json"))[0].write_text("{not json")
    caplog.set_level(logging.WARNING, logger="warden.agent")

    again = ResultSpool(tmp_path)

    assert again.items() == [("2:1", {"n": 2})]
    assert "unreadable result" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == ["0000000000000002.json"]


# --- the agent across restarts ---------------------------------------------------------


def run_agent_until(agent: Agent, condition, timeout: float = 5.0) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        wait_until(condition, timeout)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def spooled_agent(url: str, spool: Path, executor=None) -> Agent:
    return Agent(
        url,
        KEY,
        "web-01",
        HealthyMetrics(),
        executor or RecordingExecutor(),
        interval=0.05,
        poll_wait=0.3,
        backoff_start=0.05,
        backoff_max=0.1,
        spool_dir=spool,
        start_jitter=0,
    )


def test_readings_taken_while_the_server_was_down_are_sent_after_a_restart(tmp_path):
    down = FakeWarden(listen=False)
    first = spooled_agent(down.url, tmp_path)
    run_agent_until(first, lambda: len(first.readings) >= 4)
    kept = first.readings.oldest(len(first.readings))
    down.close()

    fake = FakeWarden()
    try:
        second = spooled_agent(fake.url, tmp_path)
        run_agent_until(second, lambda: len(fake.samples()) >= len(kept))
        assert fake.samples()[: len(kept)] == kept
    finally:
        fake.close()
    assert len(ReadingSpool(tmp_path)) <= 2  # acknowledged readings are gone from disk


def test_a_result_not_yet_acknowledged_is_reported_after_a_restart_and_not_run_again(tmp_path):
    fake = FakeWarden()
    try:
        fake.result_status = 503
        executor = RecordingExecutor()
        first = spooled_agent(fake.url, tmp_path, executor)
        fake.give(order("fix_it", execution_id=21, token=4))
        run_agent_until(first, lambda: fake.made("POST", "/api/v1/agent/actions/21/result"))
        assert len(executor.ran) == 1

        fake.result_status = 200
        fresh = RecordingExecutor()
        second = spooled_agent(fake.url, tmp_path, fresh)
        run_agent_until(second, lambda: not second.results)

        last = fake.made("POST", "/api/v1/agent/actions/21/result")[-1]["body"]
        assert last["ok"] is True and last["token"] == 4 and last["argv"] == ["fix-it", "--now"]
        assert fresh.ran == []
        assert ResultSpool(tmp_path).items() == []
    finally:
        fake.close()


def test_an_action_the_agent_died_running_is_reported_failed_at_the_next_start(tmp_path):
    argv = ["fix-it", "--now"]
    record = {"execution_id": 30, "token": 2, "action": "fix_it", "state": "started"}
    ResultSpool(tmp_path).put("30:2", {**record, "argv": argv})
    fake = FakeWarden()
    try:
        agent = spooled_agent(fake.url, tmp_path)
        run_agent_until(agent, lambda: fake.made("POST", "/api/v1/agent/actions/30/result"))
    finally:
        fake.close()

    (report,) = fake.made("POST", "/api/v1/agent/actions/30/result")
    assert report["body"] == {
        "token": 2,
        "ok": False,
        "output": INTERRUPTED,
        "argv": argv,
        "argv_digest": argv_digest(argv),
        "exit_code": None,
    }


def test_the_spool_files_are_private_to_the_agent(tmp_path):
    spool = tmp_path / "spool"
    ReadingSpool(spool).append(reading(1))
    ResultSpool(spool).put("1:1", {"secret": "output"})
    for folder in (spool / "readings", spool / "results"):
        assert folder.stat().st_mode & 0o077 == 0
    assert json.loads(next((spool / "results").glob("*.json")).read_text())["key"] == "1:1"


def test_a_spooled_result_that_cannot_be_reported_is_dropped_at_start(tmp_path, caplog):
    ResultSpool(tmp_path).put("x", {"action": "fix_it", "state": "finished", "body": {}})
    caplog.set_level(logging.WARNING, logger="warden.agent")

    agent = spooled_agent("http://127.0.0.1:9", tmp_path)

    assert not agent.results and not ResultSpool(tmp_path).items()
    assert "spooled result x has no execution id or token; dropped" in caplog.text
