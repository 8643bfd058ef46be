"""Saving a policy: every edit is a new version (django-simple-history) and an audit event.

A policy is never deleted: it is retired by disabling it, which is an edit like any other.
"""

from typing import Any

from governance.changes import Change, save_governed
from governance.models import Policy


def save_policy(policy: Policy, *, user: Any, reason: str | None) -> Change:
    """Validate and save `policy` as a new version, audited in `user`'s name with `reason`."""
    return save_governed(policy, user=user, reason=reason)
