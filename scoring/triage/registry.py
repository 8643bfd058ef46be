"""The triage model's registry: register a trained pipeline, load and serve the approved one.

The same rules as the severity model's (scoring.registry): a skops artifact whose sha256
is recorded at registration and checked on every load, no type beyond skops' safe
defaults and TRUSTED_TYPES, and a per-process cache that asks the database at most every
WARDEN_MODEL_REFRESH_SECONDS whether the approved version changed.
"""

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max

from governance.audit.errors import Unavailable
from governance.audit.log import append_events, event
from scoring.choices import ModelStatus
from scoring.models import TriageModelVersion
from scoring.registry import ApprovedModelCache, load_estimator, save_artifact
from scoring.triage.model import Rule, TriageTrainingResult

# Exactly what skops.io.get_untrusted_types reports for the pipeline scoring.triage.model
# builds (the calibrated LinearSVC's per-fold parts); anything else in a file is refused.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {"sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"}
)
ARTIFACT_KIND = "triage"


class NoApprovedTriageModel(Unavailable):
    """No triage model version is approved: tickets' words are not read, a person triages."""

    def __init__(self, message: str) -> None:
        super().__init__("triage_model_unavailable", message)


@dataclass(frozen=True)
class ServingTriageModel:
    version_id: int
    version: int
    sha256: str
    pipeline: Any
    rule: Rule
    labels: tuple[str, ...]


def load_pipeline(version: TriageModelVersion) -> Any:
    """The version's fitted pipeline; ModelIntegrityError if its file was changed."""
    return load_estimator(version.artifact, version.sha256, trusted_types=TRUSTED_TYPES)


def next_version_number() -> int:
    return (TriageModelVersion.objects.aggregate(top=Max("version"))["top"] or 0) + 1


def register_triage_result(
    result: TriageTrainingResult, *, actor: str, params: dict | None = None
) -> TriageModelVersion:
    """Save the pipeline and register it as a candidate version, audited."""
    with transaction.atomic():
        number = next_version_number()
        artifact, sha256 = save_artifact(result.pipeline, number, kind=ARTIFACT_KIND)
        version = TriageModelVersion.objects.create(
            version=number,
            algorithm=result.params["algorithm"],
            artifact=artifact,
            sha256=sha256,
            thresholds=result.rule.as_dict(),
            params={**result.params, **(params or {})},
            metrics=result.metrics,
            text_reference=result.text_reference,
        )
        append_events(
            [
                event(
                    actor,
                    "triage_model.registered",
                    version,
                    f"triage model v{number} registered as a candidate (runbook accuracy "
                    f"{result.metrics['runbook_accuracy']:.4f}, "
                    f"{result.metrics['unsafe_suggestions']} unsafe suggestions held out)",
                    data={"sha256": sha256, "thresholds": result.rule.as_dict()},
                )
            ]
        )
    return version


def serving_triage_from(version: TriageModelVersion) -> ServingTriageModel:
    pipeline = load_pipeline(version)
    return ServingTriageModel(
        version_id=version.pk,
        version=version.version,
        sha256=version.sha256,
        pipeline=pipeline,
        rule=Rule.from_dict(version.thresholds),
        labels=tuple(pipeline.classes_),
    )


def _approved_triage_version() -> TriageModelVersion | None:
    return TriageModelVersion.objects.filter(status=ModelStatus.APPROVED).first()


def _no_triage_model() -> NoApprovedTriageModel:
    return NoApprovedTriageModel(
        "no triage model is approved: run "
        "`python manage.py train_triage_model --approve` or approve one in the admin"
    )


_cache = ApprovedModelCache(_approved_triage_version, serving_triage_from, _no_triage_model)


def serving_triage_model() -> ServingTriageModel:
    """The approved triage model, loaded once per process, refreshed when approval changes."""
    return _cache.get()


def forget_serving_triage_model() -> None:
    """Drop this process's cached model (tests, and after an approval in this process)."""
    _cache.clear()
