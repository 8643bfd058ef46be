"""Saving a policy: every edit is a new version (django-simple-history) and an audit event.

A policy is never deleted: it is retired by disabling it, which is an edit like any other.

A policy in shadow mode decides and records without acting; switching it to enforce
needs people's later verdicts to have agreed with enough of its decisions (its shadow
agreement, governance.rules.autonomy), or an explicit override whose reason is the change's.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from feedback.models import Feedback
from governance.audit.changes import Change, record_change
from governance.choices import PolicyMode
from governance.models import Decision, Policy
from governance.rules import autonomy

# The admin form's checkbox, and the keyword of save_policy, that switch anyway.
OVERRIDE_FIELD = "override_shadow_agreement"


def thresholds() -> autonomy.Thresholds:
    """The promotion, demotion and shadow numbers from the settings (README: Configuration)."""
    return autonomy.Thresholds(
        min_fixes=settings.WARDEN_PROMOTION_MIN_FIXES,
        min_success_rate=settings.WARDEN_PROMOTION_MIN_SUCCESS_RATE,
        min_positive_rate=settings.WARDEN_PROMOTION_MIN_POSITIVE_RATE,
        min_reliability=settings.WARDEN_PROMOTION_MIN_RELIABILITY,
        demotion_failures=settings.WARDEN_DEMOTION_FAILURES,
        demotion_window=timedelta(hours=settings.WARDEN_DEMOTION_WINDOW_HOURS),
        shadow_min_agreement=settings.WARDEN_SHADOW_MIN_AGREEMENT,
        shadow_min_cases=settings.WARDEN_SHADOW_MIN_CASES,
    )


def shadow_agreement_of(policy: Policy) -> autonomy.Agreement:
    """How often people's feedback agreed with `policy`'s shadow decisions (two queries)."""
    shadow = Decision.objects.filter(policy=policy, shadow=True)
    decisions = [
        autonomy.ShadowDecision(ticket, decided_at)
        for ticket, decided_at in shadow.values_list("ticket_id", "created_at")
    ]
    verdicts = [
        autonomy.Verdict(ticket, given_at, autonomy.verdict_agrees(kind, accurate))
        for ticket, given_at, kind, accurate in Feedback.objects.filter(
            ticket__in=shadow.values("ticket")
        ).values_list("ticket_id", "created_at", "feedback_type", "resolution_accurate")
    ]
    return autonomy.shadow_agreement(decisions, verdicts)


def enforce_check(policy: Policy) -> tuple[autonomy.Agreement | None, str | None]:
    """For an edit switching `policy` from shadow (as stored) to enforce (as edited): its
    agreement, and why that is not enough (None if it is). (None, None) for any other edit.
    """
    stored = Policy.objects.filter(pk=policy.pk).values_list("mode", flat=True).first()
    if policy.pk is None or stored != PolicyMode.SHADOW or policy.mode != PolicyMode.ENFORCE:
        return None, None
    agreement = shadow_agreement_of(policy)
    return agreement, autonomy.enforce_refusal(agreement, thresholds())


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
