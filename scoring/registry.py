"""The versioned model registry: save, verify, and serve (approving and retiring a
version are people's actions, in scoring.actions).

Artifacts are skops files whose sha256 is recorded at registration; a file that
no longer matches is refused. Each process keeps the approved model in memory
and asks the database at most every WARDEN_MODEL_REFRESH_SECONDS whether the
approved version changed, so an approval reaches every web process and worker
within seconds, without a restart.
"""

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from governance.audit.errors import Unavailable
from governance.audit.log import append_events, event
from scoring.choices import ModelStatus, Severity
from scoring.features import FEATURE_NAMES
from scoring.models import ModelVersion
from scoring.serving import ServingEstimator
from scoring.training import TrainingResult, confusion_matrix_svg

# The only types beyond skops' own safe defaults that a Warden artifact may hold:
# exactly what skops.io.get_untrusted_types reports for what scoring.training
# produces. Exact names, not prefixes: a prefix such as "builtins." would trust
# builtins.eval, which a crafted schema calls at load. A new algorithm that needs
# more types adds them here, deliberately.
TRUSTED_TYPES = frozenset({"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"})


Served = TypeVar("Served")


class NoApprovedModel(Unavailable):
    """No model version is approved, so nothing can be classified."""

    def __init__(self, message: str) -> None:
        super().__init__("model_unavailable", message)


class ModelIntegrityError(Unavailable):
    """An artifact is missing, does not match its recorded hash, or holds unexpected types:
    it neither serves nor can be approved."""

    def __init__(self, message: str) -> None:
        super().__init__("model_unavailable", message)


@dataclass(frozen=True)
class ServingModel:
    version_id: int
    version: int
    sha256: str
    estimator: ServingEstimator
    thresholds: dict[str, Any]
    feature_names: tuple[str, ...]


def model_dir() -> Path:
    path = Path(settings.MODEL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_artifact(estimator: Any, version: int, kind: str = "severity") -> tuple[str, str]:
    """Write the estimator as a skops file named after its `kind`; returns (file name, sha256)."""
    import skops.io  # here, not at the top: see load_estimator

    data = skops.io.dumps(estimator)
    sha256 = hashlib.sha256(data).hexdigest()
    # The hash in the name: two trainings racing for one version number cannot
    # overwrite each other's file (the loser's insert fails on the unique version).
    name = f"{kind}-v{version}-{sha256[:12]}.skops"
    path = model_dir() / name
    # Written aside then renamed, so no process ever reads half a file.
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return name, sha256


def load_estimator(
    artifact: str, sha256: str, trusted_types: frozenset[str] = TRUSTED_TYPES
) -> Any:
    """Load an artifact after checking its hash and that it holds no types beyond skops'
    safe defaults and `trusted_types` (each model kind names its own)."""
    # Imported here: importing skops.io lists every scikit-learn estimator (1.6 s), which
    # every Django process paid at start, whether it ever loads a model or not.
    import skops.io

    path = model_dir() / artifact
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"model file {artifact} cannot be read: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelIntegrityError(
            f"model file {artifact} does not match its recorded sha256 "
            f"(recorded {sha256[:12]}, file {actual[:12]})"
        )
    untrusted = skops.io.get_untrusted_types(data=data)
    # Checked before loading: skops instantiates (and may call) types while it loads.
    unexpected = sorted(set(untrusted) - trusted_types)
    if unexpected:
        raise ModelIntegrityError(
            f"model file {artifact} holds untrusted types, refused: {', '.join(unexpected)}"
        )
    return skops.io.loads(data, trusted=sorted(trusted_types))


def next_version_number() -> int:
    return (ModelVersion.objects.aggregate(top=Max("version"))["top"] or 0) + 1


def register_version(
    *,
    estimator: Any,
    algorithm: str,
    feature_names: tuple[str, ...],
    thresholds: dict[str, Any],
    class_weights: dict,
    params: dict,
    metrics: dict,
    feature_distribution: dict,
    confusion_matrix_svg: str,
    actor: str,
) -> ModelVersion:
    """Save the artifact and register it as a candidate version."""
    with transaction.atomic():
        version = next_version_number()
        artifact, sha256 = save_artifact(estimator, version)
        model_version = ModelVersion.objects.create(
            version=version,
            algorithm=algorithm,
            artifact=artifact,
            sha256=sha256,
            feature_names=list(feature_names),
            thresholds=thresholds,
            class_weights={str(k): v for k, v in class_weights.items()},
            params=params,
            metrics=metrics,
            feature_distribution=feature_distribution,
            confusion_matrix_svg=confusion_matrix_svg,
        )
        append_events(
            [
                event(
                    actor,
                    "model.registered",
                    model_version,
                    f"model v{version} registered as a candidate "
                    f"(macro-F1 {metrics.get('macro_f1', 0):.4f})",
                    data={"sha256": sha256, "metrics": metrics, "thresholds": thresholds},
                )
            ]
        )
    return model_version


def register_training_result(
    result: TrainingResult, *, actor: str, params: dict | None = None
) -> ModelVersion:
    """Register what scoring.training produced, with `params` added to its own."""
    return register_version(
        estimator=result.estimator,
        algorithm=type(result.estimator).__name__,
        feature_names=FEATURE_NAMES,
        thresholds=result.thresholds,
        class_weights=result.class_weights,
        params={**result.params, **(params or {})},
        metrics=result.metrics,
        feature_distribution=result.feature_distribution,
        confusion_matrix_svg=confusion_matrix_svg(
            result.metrics["confusion_matrix"], Severity.labels
        ),
        actor=actor,
    )


class ApprovedModelCache(Generic[Served]):
    """A process's copy of the one approved version of a kind of model.

    At most every WARDEN_MODEL_REFRESH_SECONDS it asks the database which version is
    approved (`find`: the row, or None), and loads it again (`build`) only when that
    version or its file's hash changed. With none approved it raises `missing()`.
    """

    def __init__(
        self,
        find: Callable[[], Any],
        build: Callable[[Any], Served],
        missing: Callable[[], Exception],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.find, self.build, self.missing = find, build, missing
        self.lock = threading.Lock()
        self.clock = clock  # replaceable, so tests can move time on
        self.model: Served | None = None
        self.key: tuple[int, str] | None = None
        self.checked_at = 0.0

    def get(self) -> Served:
        now = self.clock()
        if self.model is not None and now - self.checked_at < settings.WARDEN_MODEL_REFRESH_SECONDS:
            return self.model
        with self.lock:
            approved = self.find()
            if approved is None:
                self.model, self.key = None, None
                raise self.missing()
            key = (approved.pk, approved.sha256)
            if self.model is None or self.key != key:
                self.model, self.key = self.build(approved), key
            self.checked_at = now
            return self.model

    def clear(self) -> None:
        with self.lock:
            self.model, self.key = None, None
            self.checked_at = 0.0


def _approved_severity_version() -> ModelVersion | None:
    return (
        ModelVersion.objects.filter(status=ModelStatus.APPROVED)
        .only("id", "version", "artifact", "sha256", "thresholds", "feature_names")
        .first()
    )


def _serving_severity(approved: ModelVersion) -> ServingModel:
    return ServingModel(
        version_id=approved.pk,
        version=approved.version,
        sha256=approved.sha256,
        estimator=ServingEstimator(load_estimator(approved.artifact, approved.sha256)),
        thresholds=dict(approved.thresholds),
        feature_names=tuple(approved.feature_names),
    )


def _no_severity_model() -> NoApprovedModel:
    return NoApprovedModel(
        "no severity model is approved: run "
        "`python manage.py train_severity_model --approve` or approve one in the admin"
    )


_cache = ApprovedModelCache(_approved_severity_version, _serving_severity, _no_severity_model)


def serving_model() -> ServingModel:
    """The approved model, loaded once per process and refreshed when approval changes."""
    return _cache.get()


def forget_serving_model() -> None:
    """Drop this process's cached model (tests, and after an approval in this process)."""
    _cache.clear()
