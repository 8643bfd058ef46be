"""The Kubernetes worker's probe (deploy/kubernetes/worker.yaml) against a real qcluster on
Redis: it passes while the cluster runs and fails once it has stopped."""

import subprocess
import sys

import pytest
import yaml

from tests.integration.conftest import process_env, wait_until
from tests.test_kubernetes_manifests import KUBERNETES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def probe_command() -> list[str]:
    [deployment] = yaml.safe_load_all((KUBERNETES / "worker.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command = container["livenessProbe"]["exec"]["command"]
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_the_worker_probe_follows_the_qcluster(processes, tmp_path):
    def probe() -> subprocess.CompletedProcess:
        return subprocess.run(
            probe_command(), env=process_env(tmp_path), capture_output=True, text=True, timeout=60
        )

    # given no qcluster on this machine, the probe fails
    # (a cluster left by another test would still be running: none is, each stops its own)
    assert probe().returncode == 1

    # when a qcluster starts, the probe passes
    cluster = processes.start("qcluster", "manage.py", "qcluster")
    wait_until(
        lambda: probe().returncode == 0,
        timeout=90,
        what="the probe to see the qcluster",
        logs=lambda: processes.log("qcluster")[-3000:],
    )

    # when it stops, the probe fails again (its status expires from Redis within 3 s)
    cluster.terminate()
    cluster.wait(timeout=30)
    wait_until(lambda: probe().returncode == 1, timeout=30, what="the probe to fail")
    assert "no running qcluster on" in probe().stderr
