"""People's actions on the triage model registry: approve a version to serve, or retire one.

Like scoring.actions for the severity model, with one more gate: while another version
serves, a candidate is approved only once it was compared with that version on the same
recent tickets (scoring.triage.tasks.compare_with_serving; the admin shows the figures).
Refused rather than warned: a warning in a list page is easily clicked past, and the
comparison is what tells a supervisor whether the new version suggests riskier runbooks
on Warden's own tickets, which the held-out corpus cannot. With nothing serving there is
nothing to compare with, so the first version needs no comparison.
"""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.errors import Conflict
from governance.audit.log import append_events, event, user_actor
from scoring.actions import retire_locked
from scoring.choices import ModelStatus
from scoring.models import TriageModelVersion
from scoring.triage.registry import load_pipeline

KIND = "triage_model"  # its audit events: triage_model.approved, .retired


class NotCompared(Conflict):
    def __init__(self, message: str) -> None:
        super().__init__("not_compared", message)


def comparison_is_current(candidate: TriageModelVersion, serving: TriageModelVersion) -> bool:
    """Whether the candidate's finished comparison was made against `serving`."""
    comparison = candidate.comparison or {}
    return (
        bool(comparison.get("finished_at")) and comparison.get("serving_version_id") == serving.pk
    )


def approve_triage_model_version(
    version: TriageModelVersion, *, actor: Any, reason: str, now: datetime
) -> None:
    """Make this version the one that serves from `now`; the one approved before retires.

    Raises ModelIntegrityError if its file does not match its hash, NotCompared if another
    version serves and this one was not compared with it; either changes nothing.
    """
    require_permission(actor, permissions.SERVE_MODEL, "approve triage model versions")
    note = require_reason(reason) if actor is not None else reason
    load_pipeline(version)  # refuse a tampered file before it can serve anywhere
    with transaction.atomic():
        version = TriageModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelStatus.APPROVED:
            return
        serving = list(
            TriageModelVersion.objects.select_for_update().filter(status=ModelStatus.APPROVED)
        )
        for previous in serving:
            if not comparison_is_current(version, previous):
                raise NotCompared(
                    f"triage model v{version.version} was not compared with the serving "
                    f"v{previous.version} on recent tickets: run the comparison first "
                    "(admin action 'Compare with the serving version')"
                )
        events = []
        for previous in serving:
            why = f"v{version.version} approved"
            events.append(
                retire_locked(previous, actor=actor, note=note, now=now, kind=KIND, why=why)
            )
        version.status = ModelStatus.APPROVED
        version.approved_at = now
        version.approved_by = actor
        version.retired_at = None
        version.save(update_fields=["status", "approved_at", "approved_by", "retired_at"])
        events.append(
            event(
                user_actor(actor),
                "triage_model.approved",
                version,
                f"triage model v{version.version} approved to serve",
                data={"sha256": version.sha256, "note": note, "comparison": version.comparison},
            )
        )
        append_events(events)


def retire_triage_model_version(
    version: TriageModelVersion, *, actor: Any, reason: str, now: datetime
) -> None:
    """Take a version out of service at `now`; with none approved, people triage every
    ticket. A person gives a reason; a local command (actor None) may pass ""."""
    require_permission(actor, permissions.SERVE_MODEL, "retire triage model versions")
    note = require_reason(reason) if actor is not None else reason
    with transaction.atomic():
        version = TriageModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelStatus.RETIRED:
            return
        append_events([retire_locked(version, actor=actor, note=note, now=now, kind=KIND)])
