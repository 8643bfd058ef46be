"""System checks of the scoring settings (registered by ScoringConfig.ready)."""

from django.conf import settings
from django.core.checks import Error, register

from scoring.reliability import FEEDBACK_FORMULAS


@register()
def check_feedback_formula(app_configs, **kwargs) -> list:
    """The reliability score's feedback formula is named by a setting: refuse a typo at
    start-up rather than at the first decision."""
    formula = settings.WARDEN_FEEDBACK_FORMULA
    if formula not in FEEDBACK_FORMULAS:
        return [
            Error(
                f"WARDEN_FEEDBACK_FORMULA is {formula!r}: it must be one of "
                f"{', '.join(repr(name) for name in FEEDBACK_FORMULAS)}.",
                id="warden.E003",
            )
        ]
    return []
