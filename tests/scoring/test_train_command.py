"""`manage.py train_severity_model`: trains, evaluates, registers a candidate, approves on ask."""

import hashlib
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from governance.approvals.actions import reject_request
from governance.models import ApprovalRequest, AuditEvent
from scoring.models import ModelVersion
from scoring.registry import NoApprovedModel, forget_serving_model, serving_model

COMMAND = "train_severity_model"
# Small enough to train in well under a second, large enough to hold all three classes.
SMALL = ["--hosts", "20", "--eval-hosts", "10", "--steps", "40"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_dir(db, settings, tmp_path, monkeypatch) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    settings.WARDEN_MODEL_REFRESH_SECONDS = 0
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    forget_serving_model()
    yield settings.MODEL_DIR
    forget_serving_model()


def train(*args: str) -> str:
    out = StringIO()
    call_command(COMMAND, *SMALL, *args, stdout=out, stderr=out)
    return out.getvalue()


def test_training_registers_a_candidate_that_does_not_serve(model_dir):
    # when
    output = train()

    # then it said what it was doing, step by step
    assert "Generating 20 hosts x 40 steps (seed 1)" in output
    assert "held-out set: 10 hosts x 40 steps (seed 2)" in output
    assert "fitting on 800 samples" in output
    assert "Registered model v1 as a candidate" in output
    assert "Not serving until approved" in output

    # and registered a candidate evaluated on the separate held-out set
    version = ModelVersion.objects.get()
    assert version.status == "candidate"
    assert (version.params["train_seed"], version.params["eval_seed"]) == (1, 2)
    assert version.metrics["n_train"] == 20 * 40
    assert version.metrics["n_eval"] == 10 * 40
    assert sum(map(sum, version.metrics["confusion_matrix"])) == 10 * 40
    assert 0 < version.metrics["macro_f1"] <= 1
    assert version.confusion_matrix_svg.startswith("<svg")
    assert version.feature_distribution
    data = (model_dir / version.artifact).read_bytes()
    assert hashlib.sha256(data).hexdigest() == version.sha256
    assert AuditEvent.objects.filter(action="model.registered").count() == 1

    # which classifies nothing until a person approves it
    with pytest.raises(NoApprovedModel):
        serving_model()


def test_approve_makes_the_new_version_serve(model_dir):
    output = train("--approve")

    version = ModelVersion.objects.get()
    assert version.status == "approved"
    assert "Model v1 approved to serve." in output
    assert serving_model().version == 1
    assert AuditEvent.objects.filter(action="model.approved", object_id=str(version.pk)).exists()


def test_a_new_candidate_leaves_the_serving_version_in_place(model_dir):
    train("--approve")

    train("--seed", "5", "--eval-seed", "6")

    statuses = dict(ModelVersion.objects.values_list("version", "status"))
    assert statuses == {1: "approved", 2: "candidate"}
    assert serving_model().version == 1


def test_peoples_verdicts_are_folded_into_training(agent, bob, model_dir):
    # given an approver's veto on a risky change (the agent's model is v1)
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    reject_request(request, actor=bob, reason="not now", now=timezone.now())

    # when
    output = train()

    # then the verdict is trained on, weighted above generated samples
    assert "1 samples labelled by people's verdicts" in output
    version = ModelVersion.objects.get(version=2)
    assert version.params["history_samples"] == 1
    assert version.metrics["n_train"] == 20 * 40 + version.params["history_weight"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "0"], "--hosts and --eval-hosts must be at least 1"),
        (["--eval-hosts", "0"], "--hosts and --eval-hosts must be at least 1"),
        (["--steps", "1"], "--steps must be at least 2"),
        (["--history-days", "-1"], "--history-days cannot be negative"),
        (["--seed", "3", "--eval-seed", "3"], "--eval-seed must differ from --seed"),
        (["--hosts", "1", "--steps", "2"], "cannot train: y_train must hold at least two classes"),
        (["--hosts", "many"], "invalid int value: 'many'"),
    ],
)
def test_bad_options_are_refused_with_one_readable_line(model_dir, args, message):
    with pytest.raises(CommandError) as error:
        train(*args)

    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert not ModelVersion.objects.exists()


def test_a_refused_run_exits_non_zero_for_scripts(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "WARDEN_MODEL_DIR": str(tmp_path / "models"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)

    done = subprocess.run(
        [sys.executable, "manage.py", COMMAND, "--seed", "3", "--eval-seed", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "CommandError: --eval-seed must differ from --seed: the held-out set is separate"
    ]


# MLflow is optional: logged to when MLFLOW_TRACKING_URI is set, never imported otherwise.


def test_without_a_tracking_uri_mlflow_is_never_imported(model_dir, monkeypatch):
    # None in sys.modules makes any `import mlflow` fail
    monkeypatch.setitem(sys.modules, "mlflow", None)

    output = train()

    assert "MLflow" not in output
    assert ModelVersion.objects.count() == 1


def test_a_tracking_uri_without_mlflow_installed_is_refused_before_training(
    model_dir, monkeypatch, tmp_path
):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())

    with pytest.raises(CommandError, match="mlflow is not installed: pip install mlflow-skinny"):
        train()
    assert not ModelVersion.objects.exists()


def test_training_is_logged_to_mlflow_when_a_tracking_uri_is_set(model_dir, monkeypatch, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    # given a local MLflow file store, and no opt-in to it (Warden opts in for a file: URI)
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "unset after the test")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")

    # when
    output = train("--approve")

    # then the run holds the params, the held-out metrics and the very artifact registered
    version = ModelVersion.objects.get()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("warden-severity-model")
    [run] = client.search_runs([experiment.experiment_id])
    assert f"run {run.info.run_id}" in output
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "severity-v1"
    assert run.data.params["train_seed"] == "1"
    assert run.data.params["eval_seed"] == "2"
    assert run.data.metrics["macro_f1"] == pytest.approx(version.metrics["macro_f1"])
    assert run.data.metrics["HITL_REQUIRED_recall"] == pytest.approx(
        version.metrics["per_class"]["HITL_REQUIRED"]["recall"]
    )
    assert run.data.tags["warden.sha256"] == version.sha256
    assert run.data.tags["warden.status"] == "approved"
    logged = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert logged == {version.artifact, "confusion-matrix-v1.svg"}
    copy = client.download_artifacts(run.info.run_id, version.artifact, str(tmp_path))
    assert hashlib.sha256(Path(copy).read_bytes()).hexdigest() == version.sha256


def test_a_tracking_failure_warns_but_keeps_the_registered_version(model_dir, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("connection refused")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")
    monkeypatch.setattr(
        "scoring.management.commands.train_severity_model.require_mlflow", lambda: None
    )
    monkeypatch.setattr(
        "scoring.management.commands.train_severity_model.log_training_run", unreachable
    )

    output = train()

    assert "Warning: model v1 is registered, but logging to MLflow" in output
    assert "connection refused" in output
    assert ModelVersion.objects.get().status == "candidate"
