"""Policies a migration raised, audited after `migrate`.

A data migration cannot write the audit log (its key and chain belong to the running
code), so it leaves a new version with a known reason; after migrate, each policy whose
newest version carries that reason and whose row has not been audited since gets its
`policy.changed` event, with the version and the values that moved. Run again, it finds
nothing: the event carries the row's present state.
"""

from django.db import transaction

from governance.audit.log import append_events, event
from governance.audit.state import GOVERNED, state_digest
from governance.models import AuditEvent, Policy

# The reason migration 0022 gives the versions it writes (kept in step with it).
SEED_NUMBERS_REASON = (
    "the seed's numbers: no automatic action below reliability 60 (the seed's medium "
    "band), and 3 similar resolved tickets before acting (the seed's step 6)"
)
MIGRATION_REASONS = (SEED_NUMBERS_REASON,)


def record_migrated_versions() -> int:
    """Append one `policy.changed` event per policy a migration raised and no event has
    recorded yet; returns how many."""
    governed = next(g for g in GOVERNED if g.model is Policy)
    events = []
    with transaction.atomic():
        for policy in Policy.objects.order_by("pk"):
            version = policy.history.order_by("-history_id").first()
            if version is None or version.history_change_reason not in MIGRATION_REASONS:
                continue
            last = (
                AuditEvent.objects.filter(object_type="Policy", object_id=str(policy.pk))
                .exclude(object_state="")
                .order_by("-sequence")
                .values_list("object_state", flat=True)
                .first()
            )
            # Never audited: the install's own first record (state.installed) covers it.
            if last is None or last == state_digest(governed, policy):
                continue
            previous = version.prev_record
            changes = [] if previous is None else version.diff_against(previous).changes
            events.append(
                event(
                    "system",
                    "policy.changed",
                    policy,
                    f"policy {policy.name} changed by migrate (version {version.history_id}): "
                    f"{version.history_change_reason}",
                    data={
                        "version": version.history_id,
                        "changed": sorted(change.field for change in changes),
                        "reason": version.history_change_reason,
                        "values": {
                            change.field: {"from": change.old, "to": change.new}
                            for change in changes
                        },
                    },
                )
            )
        append_events(events)
    return len(events)
