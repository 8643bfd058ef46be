"""People's actions on the model registry: approve a version to serve, or retire one.

Each is `(model_version, *, actor, reason, now)`: a supervisor needs the change
permission and gives a reason; a local command (actor None) may approve without one.
Every process picks up the change within WARDEN_MODEL_REFRESH_SECONDS
(scoring.registry.serving_model).
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.log import PendingEvent, append_events, event, user_actor
from scoring.choices import ModelStatus
from scoring.models import ModelVersion
from scoring.registry import load_estimator


def approve_model_version(
    model_version: ModelVersion, *, actor: Any, reason: str, now: datetime
) -> None:
    """Make this version the one that serves from `now`; the one approved before retires.

    Raises ModelIntegrityError, changing nothing, if its file does not match its hash.
    A person needs the change permission and gives a reason; a local command (actor
    None, `train_severity_model --approve`) may pass "".
    """
    require_permission(actor, permissions.SERVE_MODEL, "approve model versions")
    note = require_reason(reason) if actor is not None else reason
    # Refuse a tampered file before it can serve anywhere.
    load_estimator(model_version.artifact, model_version.sha256)
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if model_version.status == ModelStatus.APPROVED:
            return
        events = []
        for previous in ModelVersion.objects.select_for_update().filter(
            status=ModelStatus.APPROVED
        ):
            why = f"v{model_version.version} approved"
            events.append(
                retire_locked(previous, actor=actor, note=note, now=now, kind="model", why=why)
            )
        model_version.status = ModelStatus.APPROVED
        model_version.approved_at = now
        model_version.approved_by = actor
        model_version.retired_at = None
        model_version.save(update_fields=["status", "approved_at", "approved_by", "retired_at"])
        events.append(
            event(
                user_actor(actor),
                "model.approved",
                model_version,
                f"model v{model_version.version} approved to serve",
                data={"sha256": model_version.sha256, "note": note},
            )
        )
        append_events(events)


def retire_model_version(
    model_version: ModelVersion, *, actor: Any, reason: str, now: datetime
) -> None:
    """Take a version out of service at `now`; with none approved, classification stops.
    A person gives a reason; a local command (actor None) may pass ""."""
    require_permission(actor, permissions.SERVE_MODEL, "retire model versions")
    note = require_reason(reason) if actor is not None else reason
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if model_version.status == ModelStatus.RETIRED:
            return
        append_events([retire_locked(model_version, actor=actor, note=note, now=now, kind="model")])


def retire_locked(
    version: Any, *, actor: Any, note: str, now: datetime, kind: str, why: str = ""
) -> PendingEvent:
    """Retire `version` (a locked ModelVersion or TriageModelVersion) at `now`; its audit
    event `<kind>.retired` ("model" or "triage_model"), saying `why` when given."""
    version.status = ModelStatus.RETIRED
    version.retired_at = now
    version.save(update_fields=["status", "retired_at"])
    name = kind.replace("_", " ")
    return event(
        user_actor(actor),
        f"{kind}.retired",
        version,
        f"{name} v{version.version} retired" + (f": {why}" if why else ""),
        data={"note": note},
    )
