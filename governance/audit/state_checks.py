"""`verify_audit --state`: the governed rows against the log, and recording their state
after an operator has checked what differs."""

from django.db import transaction
from knox.models import AuthToken

from governance.audit.changes import require_reason
from governance.audit.log import PendingEvent, append_events
from governance.audit.state import GOVERNED, state_differences, token_differences
from governance.models import AuditEvent


def state_report() -> list[str]:
    """One line per governed row (or token) that differs from its last audited state."""
    events = AuditEvent.objects.all()
    lines = [difference.line for difference in state_differences(events)]
    tokens = AuthToken.objects.select_related("user").order_by("created")
    lines += [difference.line for difference in token_differences(events, tokens)]
    return lines


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
