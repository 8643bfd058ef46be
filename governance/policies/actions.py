"""Saving a policy: every edit is a new version (django-simple-history) and an audit event.

A policy is never deleted: it is retired by disabling it, which is an edit like any other.

A policy in shadow mode decides and records without acting; switching it to enforce
needs people's later verdicts to have agreed with enough of its decisions (its shadow
agreement, governance.rules.autonomy), or an explicit override whose reason is the change's.
"""

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError

from governance.audit.changes import Change, record_change
from governance.models import Policy
from governance.policies.shadow import enforce_check

# The admin form's checkbox, and the keyword of save_policy, that switch anyway.
OVERRIDE_FIELD = "override_shadow_agreement"


def save_policy(
    policy: Policy,
    *,
    actor: Any,
    reason: str | None,
    now: datetime,
    override_shadow_agreement: bool = False,
    **audit: Any,
) -> Change:
    """Validate and save `policy` as a new version, audited in `actor`'s name (None: the
    system, as when a demotion lowers it) with `reason`, required. The version is dated
    when it is saved, so `now` is not used.

    Switching from shadow to enforce below the minimum agreement raises a ValidationError
    on `mode` unless `override_shadow_agreement` (the reason is the override's). `audit`:
    how an action names the change (governance.audit.changes.record_change's keywords).
    """
    agreement, refusal = enforce_check(policy)
    if agreement is not None:
        if refusal and not override_shadow_agreement:
            raise ValidationError({"mode": refusal})
        overridden = refusal is not None
        audit = {
            "action": "policy.enforced",
            "headline": (
                f"policy {policy.name} switched from shadow to enforce at "
                f"{agreement.line()}" + (" (below the minimum: overridden)" if overridden else "")
            ),
            "data": {
                "shadow_agreement": {
                    "cases": agreement.cases,
                    "agreed": agreement.agreed,
                    "share": agreement.share,
                },
                "override": overridden,
            },
            **audit,
        }
    return record_change(policy, actor=actor, reason=reason, **audit)
