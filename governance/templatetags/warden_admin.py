"""The admin index's "needs attention now" panel: what waits for people, with links."""

from datetime import UTC, datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone

from governance.models import ApprovalRequest, ApprovalStatus
from governance.switches import active_pauses
from remediation.choices import ExecutionState
from remediation.models import Execution
from scoring.choices import ModelStatus
from scoring.models import ModelVersion
from scoring.monitoring import model_drift

register = template.Library()


@register.inclusion_tag("admin/attention.html", takes_context=True)
def needs_attention(context: dict[str, Any]) -> dict[str, Any]:
    now = timezone.now()
    pending = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING).select_related(
        "ticket__host", "runbook"
    )
    oldest = pending.order_by("created_at").first()
    serving = ModelVersion.objects.filter(status=ModelStatus.APPROVED).first()
    drift = model_drift(serving, now) if serving else None
    return {
        "request": context.get("request"),
        "pending_count": pending.count(),
        "oldest_pending": oldest,
        "oldest_age": now - oldest.created_at if oldest else None,
        "pending_over_hour": pending.filter(created_at__lt=now - timedelta(hours=1)).count(),
        "held": Execution.objects.filter(state=ExecutionState.HELD).count(),
        "pauses": list(active_pauses(now)[:10]),
        "failed_verifications": Execution.objects.filter(
            state__in=[
                ExecutionState.FAILED,
                ExecutionState.ROLLED_BACK,
                ExecutionState.ROLLBACK_FAILED,
            ],
            finished_at__gte=now - timedelta(hours=24),
        ).count(),
        "drift": drift,
        "serving": serving,
    }


@register.filter
def when(value: str | None) -> str:
    """An ISO 8601 instant from an evidence document, as people read it (UTC, seconds)."""
    if not value:
        return "-"
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return value
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
