"""Saving a policy: every edit is a new version (django-simple-history) and an audit event."""

from typing import Any

from django.db import transaction

from governance.audit import append_events, event, user_actor
from governance.models import Policy


def save_policy(policy: Policy, *, user: Any) -> Policy:
    """Validate and save `policy` as a new version, audited in `user`'s name; returns it."""
    policy.full_clean()
    policy._history_user = user  # history names the person outside a request too
    with transaction.atomic():
        policy.save()
        version = policy.history.latest()  # the record this save wrote
        previous = version.prev_record
        if previous is None:
            action, summary, changed = "policy.created", f"{policy.name} created", []
        else:
            changed = sorted(change.field for change in version.diff_against(previous).changes)
            action = "policy.changed"
            summary = f"{policy.name} changed: {', '.join(changed) or 'saved unchanged'}"
        append_events(
            [
                event(
                    user_actor(user),
                    action,
                    policy,
                    f"{summary} (version {version.history_id})",
                    data={"version": version.history_id, "changed": changed},
                )
            ]
        )
    return policy
