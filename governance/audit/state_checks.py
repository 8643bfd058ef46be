"""`verify_audit --state`: the governed rows against the log, and recording their state
after an operator has checked what differs."""

from typing import Any

from django.db import transaction
from knox.models import AuthToken

from governance.audit.changes import require_reason
from governance.audit.log import PendingEvent, append_events
from governance.audit.state import (
    GOVERNED,
    NEVER_AUDITED,
    state_differences,
    token_differences,
)
from governance.models import AuditEvent


def state_report() -> list[str]:
    """One line per governed row (or token) that differs from its last audited state."""
    events = AuditEvent.objects.all()
    lines = [difference.line for difference in state_differences(events)]
    tokens = AuthToken.objects.select_related("user").order_by("created")
    lines += [difference.line for difference in token_differences(events, tokens)]
    return lines


INSTALLED = "state.installed"


def record_installed_state(**kwargs: Any) -> int:
    """After `migrate`: the first time, record the state of every governed row no event
    names yet (the roles, policies and runbooks the migrations seed; on an upgrade, every
    row from before Warden kept state digests), so a fresh install verifies. Only once:
    a row inserted by SQL later is never made lawful by running migrate again."""
    if AuditEvent.objects.filter(action=INSTALLED).exists():
        return 0
    by_label = {governed.label: governed for governed in GOVERNED}
    with transaction.atomic():
        differences = [
            difference
            for difference in state_differences(AuditEvent.objects.all())
            if difference.problem == NEVER_AUDITED
        ]
        append_events(
            [
                PendingEvent(
                    actor="system",
                    action=INSTALLED,
                    object_type=by_label[difference.label].object_type,
                    object_id=difference.object_id,
                    summary=f"{difference.label} {difference.object_id} as migrate found it",
                    data={"reason": "installed or upgraded by migrate"},
                )
                for difference in differences
            ]
        )
    return len(differences)


def record_current_states(*, reason: str) -> int:
    """Record, for every governed row that differs from its last audited state, an event
    carrying its present state: an operator's checked acceptance (an upgrade, a repair),
    itself in the log with its reason; a row gone is recorded as deleted. API tokens are
    not: one Warden did not issue is revoked, never accepted. Returns how many rows."""
    why = require_reason(reason)
    by_label = {governed.label: governed for governed in GOVERNED}
    with transaction.atomic():
        differences = list(state_differences(AuditEvent.objects.all()))
        events = [
            PendingEvent(
                actor="system",
                action="state.recorded",
                object_type=by_label[difference.label].object_type,
                object_id=difference.object_id,
                summary=f"present state of {difference.line} recorded: {why}"[:500],
                data={"reason": why, "was": difference.problem},
            )
            for difference in differences
        ]
        append_events(events)
    return len(events)
