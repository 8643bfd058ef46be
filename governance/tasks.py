"""django-q2 tasks of governance: thin wake-up calls."""

from django.utils import timezone

from governance.promotions.proposals import propose_promotions


def propose_autonomy_promotions() -> int:
    """Scheduled (warden-autonomy, every 5 minutes): proposals one step up where a track
    record earned one; returns how many were made."""
    return propose_promotions(timezone.now())
