"""Shadow mode: how often people's verdicts agreed with a shadow policy's decisions, and
whether that is enough to switch it to enforce; the promotion and shadow numbers from
the settings.
"""

from datetime import timedelta

from django.conf import settings

from feedback.models import Feedback
from governance.choices import PolicyMode
from governance.models import Decision, Policy
from governance.rules import autonomy


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
            # people's standing verdicts: a replaced one, or a service's, agrees with nothing
            ticket__in=shadow.values("ticket"),
            superseded_at__isnull=True,
            from_service=False,
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
