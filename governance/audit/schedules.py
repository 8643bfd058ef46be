"""The task queue's schedules, audited: a schedule decides what runs unattended and when
(the sweeper that expires approvals, the autonomy review), so creating, changing or
deleting one in the admin records who did it, why, and its before and after."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django_q.models import Schedule

from governance.audit.changes import require_permission, require_reason
from governance.audit.log import append_events, event, user_actor

# What a schedule runs, how often and when next: the fields its audit event compares.
SCHEDULE_FIELDS = (
    "name",
    "func",
    "args",
    "kwargs",
    "hook",
    "schedule_type",
    "minutes",
    "cron",
    "next_run",
    "repeats",
    "cluster",
    "intended_date_kwarg",
)


def schedule_of(schedule: Schedule | None) -> dict[str, Any]:
    """A schedule as stored, for comparing before and after an edit ({} for none)."""
    if schedule is None or schedule.pk is None:
        return {}
    # An empty text field is stored as None by code and as "" by a form: the same schedule.
    values = {name: getattr(schedule, name) for name in SCHEDULE_FIELDS}
    return {name: "" if value is None else value for name, value in values.items()}


def record_schedule_change(
    schedule: Schedule, *, actor: Any, reason: str, now: datetime, before: dict[str, Any]
) -> None:
    """Audit `schedule` saved from `before` (schedule_of the stored row; {} for a new one),
    in the caller's transaction. A save that changed nothing records nothing."""
    after = schedule_of(schedule)
    changed = [name for name in SCHEDULE_FIELDS if before.get(name) != after[name]]
    if before and not changed:
        return
    verb = "change" if before else "add"
    require_permission(actor, f"django_q.{verb}_schedule", f"{verb} task schedules")
    why = require_reason(reason)
    action = "schedule.changed" if before else "schedule.created"
    what = f"changed: {', '.join(changed)}" if before else "created"
    append_events(
        [
            event(
                user_actor(actor),
                action,
                schedule,
                f"schedule {schedule.name or schedule.func} {what}: {why}",
                data={"before": before, "after": after, "changed": changed, "reason": why},
            )
        ]
    )


def record_schedule_deleted(schedule: Schedule, *, actor: Any, reason: str, now: datetime) -> None:
    """Audit `schedule` about to be deleted, in the caller's transaction."""
    require_permission(actor, "django_q.delete_schedule", "delete task schedules")
    why = require_reason(reason)
    with transaction.atomic():
        append_events(
            [
                event(
                    user_actor(actor),
                    "schedule.deleted",
                    schedule,
                    f"schedule {schedule.name or schedule.func} deleted: {why}",
                    data={"before": schedule_of(schedule), "after": {}, "reason": why},
                )
            ]
        )
