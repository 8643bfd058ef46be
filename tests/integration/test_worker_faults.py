"""The worker role under faults, with a real qcluster on PostgreSQL and Redis: killing its
main process leaves no orphaned cluster behind, and the dispatch tasks a fault lost are
found within seconds, not at the next minute's sweep."""

import os
import signal

import psutil
import pytest
from django.utils import timezone

from remediation.executions.sweeps import requeue_lost
from remediation.models import Execution
from tests.integration.conftest import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("trusting_policies"),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def refused(*args, **kwargs):
    raise ConnectionError("broker unreachable")


def cluster_processes(main: psutil.Process) -> list[psutil.Process]:
    """The main process's descendants once its sentinel has started every worker."""
    found: list[psutil.Process] = []

    def started() -> bool:
        found[:] = main.children(recursive=True)
        return len(found) >= 4  # the sentinel, its 2 workers, pusher and monitor (5)

    wait_until(started, timeout=60, what="the cluster's processes")
    return found


def test_killing_the_cluster_s_main_process_leaves_no_orphan(processes):
    # given a running cluster: its main process, the sentinel and the sentinel's children
    cluster = processes.start("qcluster", "manage.py", "qcluster")
    children = cluster_processes(psutil.Process(cluster.pid))

    # when its main process is killed outright
    os.kill(cluster.pid, signal.SIGKILL)
    cluster.wait(timeout=10)

    # then every process of the cluster goes with it: none is left taking tasks
    def alive() -> list[psutil.Process]:
        return [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    wait_until(
        lambda: not alive(),
        timeout=10,
        what="the cluster's processes to die with their parent",
        logs=lambda: f"still running: {[(p.pid, p.cmdline()) for p in alive()]}",
    )


def test_work_the_broker_refused_is_dispatched_within_seconds(processes, agent, monkeypatch):
    # given a cluster running, and then a fix queued while the broker refused its task
    processes.start("qcluster", "manage.py", "qcluster")
    wait_until(
        lambda: "running" in processes.log("qcluster").lower(),
        timeout=60,
        what="the cluster to start",
        logs=lambda: processes.log("qcluster"),
    )
    monkeypatch.setattr("remediation.executions.rows.async_task", refused)
    agent.post_metrics(agent.sample("disk"))
    execution = Execution.objects.get()
    assert (execution.state, execution.enqueued_at) == ("queued", None)

    # then the worker finds it and dispatches it in seconds, not at a sweep minutes later
    wait_until(
        lambda: Execution.objects.get().state == "dispatched",
        timeout=20,
        what="the lost dispatch to be found",
        logs=lambda: processes.log("qcluster")[-3000:],
    )
    assert requeue_lost(timezone.now()) == 0  # and nothing is left for the sweeper
