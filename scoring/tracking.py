"""Optional experiment tracking: with MLFLOW_TRACKING_URI set, training runs are logged to MLflow.

mlflow (or mlflow-skinny) is an optional dependency, in requirements-dev.txt only:
it is imported inside the functions that need it, so Warden runs without it and
nothing imports it unless tracking is asked for.
"""

import importlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow's own variable for the experiment name, honoured when set.
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "warden-severity-model"
# MLflow refuses its local file store (in maintenance mode upstream) unless this is true.
ALLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


class TrackingUnavailable(Exception):
    """Tracking was asked for, but mlflow is not installed."""


def tracking_uri() -> str | None:
    """The MLflow tracking URI from the environment; None when tracking is off."""
    return os.environ.get(TRACKING_URI_ENV, "").strip() or None


def require_mlflow() -> Any:
    """Import mlflow, or raise TrackingUnavailable saying how to get it."""
    try:
        return importlib.import_module("mlflow")
    except ImportError as exc:
        raise TrackingUnavailable(
            f"{TRACKING_URI_ENV} is set but mlflow is not installed: "
            "pip install mlflow-skinny, or unset the variable"
        ) from exc


def allow_file_store(uri: str) -> None:
    """Opt into MLflow's file store when `uri` is a file: URI or a plain path.

    Pointing MLFLOW_TRACKING_URI at a directory is already the ask for it; without
    this, mlflow refuses the store and the run is not logged. An explicit value wins.
    """
    if urlparse(uri).scheme in ("", "file"):
        os.environ.setdefault(ALLOW_FILE_STORE_ENV, "true")


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics of a training result as MLflow keys: macro_f1, HITL_REQUIRED_recall..."""
    flat = {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    for name, scores in metrics.get("per_class", {}).items():
        for score, value in scores.items():
            flat[f"{name}_{score}"] = float(value)
    return flat


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as MLflow stores them: strings, lists and dicts as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in params.items()
    }


def log_training_run(
    uri: str,
    *,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    artifacts: Sequence[Path],
    tags: Mapping[str, str],
) -> str:
    """Log one training run (params, metrics, artifact files, tags) to `uri`; returns its run id.

    Uses an explicit client for `uri`, so no process-wide MLflow state is left behind.
    """
    require_mlflow()
    allow_file_store(uri)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    name = os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    try:
        now_ms = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now_ms, 0) for k, v in flat_metrics(metrics).items()],
            params=[Param(k, v) for k, v in flat_params(params).items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        for path in artifacts:
            client.log_artifact(run_id, str(path))
    except Exception:  # whatever failed, the run is marked failed and the error goes on
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id
