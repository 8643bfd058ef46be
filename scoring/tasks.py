"""django-q2 tasks of scoring: thin wake-up calls that take ids and tolerate rows that are gone.

Training a triage model candidate and re-scoring recent tickets with it take seconds to
minutes, so they run in the workers (queued by the admin's actions, or on a schedule),
recording their progress on the candidate as they go (scoring.triage.candidates).
"""

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from scoring.models import TriageModelVersion
from scoring.retention import apply_retention
from scoring.triage.candidates import compare_with_serving, request_comparison, train_candidate

RETRAIN_TASK = "scoring.tasks.retrain_triage_model"
COMPARE_TASK = "scoring.tasks.compare_triage_candidate"


def retrain_triage_model(actor: str = "system:retrain", seed: int = 0) -> int:
    """Train a candidate on the corpus and people's resolved tickets, then compare it with
    the serving version on recent tickets; returns the candidate's id."""
    version = train_candidate(actor=actor, now=timezone.now(), seed=seed)
    compare_with_serving(version, now=timezone.now(), actor=actor)
    return version.pk


def compare_triage_candidate(version_id: int, actor: str = "system") -> dict | None:
    """Re-score recent tickets with the candidate and the serving version (None: the
    version is gone, or is itself the serving one)."""
    version = TriageModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return None
    try:
        return compare_with_serving(version, now=timezone.now(), actor=actor)
    except ValueError:
        return None


def keep_readings() -> dict:
    """The hourly `warden-retention` schedule: make the coming partitions, remove readings
    past their keeping period (scoring.retention); returns what it did, for the task's
    result in the admin."""
    run = apply_retention(timezone.now())
    return {"made": run.made, "removed": run.removed}


def queue_triage_retraining(actor: str) -> None:
    """Queue a retraining once the caller's transaction commits."""
    transaction.on_commit(lambda: async_task(RETRAIN_TASK, actor), robust=True)


def queue_triage_comparison(version: TriageModelVersion, actor: str) -> None:
    """Queue a comparison once the caller's transaction commits; the admin shows it queued.
    Refuses (Conflict) the serving version."""
    request_comparison(version, actor=actor, now=timezone.now())
    transaction.on_commit(lambda: async_task(COMPARE_TASK, version.pk, actor), robust=True)
