"""The admin index's "needs attention now" panel, the filters that put labels where
codes would be (severity, outcome, risk, event types, checks) and numbers as people read them,
and safe_href, the one way an address from outside becomes a link.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from governance.console.panels import fleet_state
from governance.rules import labels

register = template.Library()


@register.inclusion_tag("admin/attention.html", takes_context=True)
def needs_attention(context: dict[str, Any]) -> dict[str, Any]:
    """The admin index's dashboard: the live console's banner, as a table."""
    now = timezone.now()
    return {"request": context.get("request"), "state": fleet_state(now), "now": now}


@register.filter
def when(value: str | datetime | None) -> str:
    """An instant (or an evidence document's ISO 8601 text) as people read it: UTC, seconds."""
    if not value:
        return "-"
    if isinstance(value, datetime):
        instant = value
    else:
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return value
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _coded(label: str, code: Any) -> SafeString:
    # The label to read, the code to search the audit or the API for on hover.
    return format_html('<span class="coded" title="{}">{}</span>', code, label)


@register.filter
def outcome_label(outcome: str) -> SafeString:
    """HITL_REQUIRED -> 'Needs a person' (the code on hover)."""
    return _coded(labels.outcome_label(outcome), outcome)


@register.filter
def severity_label(severity: int | None) -> SafeString:
    """2 -> 'Needs a person' (the class's code on hover)."""
    code = labels.OUTCOME_BY_SEVERITY.get(severity, severity)
    return _coded(labels.severity_label(severity), code)


@register.filter
def event_label(action: str) -> SafeString:
    """approval.requested -> 'Approval requested' (the event type on hover)."""
    return _coded(labels.event_label(action), action)


@register.filter
def risk_label(risk_level: str) -> str:
    return labels.risk_label(risk_level)


@register.filter
def check_list(checks: Mapping[str, bool] | None) -> list[tuple[str, bool]]:
    """A decision's safety checks as (label, passed) pairs."""
    return labels.check_list(checks or {})


@register.filter
def probability(value: float | None) -> str:
    """0.9832277 -> '98%': probabilities on the same scale as every other share."""
    return "-" if value is None else labels.percent(value)


@register.filter
def class_with_probability(severity: int | str | None, probability: float | None) -> SafeString:
    """2 (or "HITL_REQUIRED"), 0.03 -> 'Needs a person, only 3% probable: picked as the
    cautious class'."""
    severity = labels.SEVERITY_BY_OUTCOME.get(severity, severity)  # type: ignore[arg-type]
    code = labels.OUTCOME_BY_SEVERITY.get(severity, severity)
    return _coded(labels.class_with_probability(severity, probability), code)


@register.filter
def drivers(explanation: Any, model_outcome: str | int | None = None) -> str:
    """A decision's explanation as words: 'disk usage [disk_usage], strongly towards
    auto-heal (+98 points)'. `model_outcome` is the model's class (code or number)."""
    severity = labels.SEVERITY_BY_OUTCOME.get(model_outcome, model_outcome)
    return labels.driver_list(explanation or (), severity if isinstance(severity, int) else None)


@register.filter
def percent(value: float | None) -> str:
    """A 0-1 share as a percentage: 0.873 -> '87%'."""
    return "-" if value is None else f"{value:.0%}"


# An absolute http(s) address, nothing a browser would strip or read differently around it.
_WEB_ADDRESS = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.IGNORECASE)


@register.filter
def safe_href(address: Any) -> str:
    """`address` if it may be a link's href, else "": an address from outside (an alert's
    generatorURL, a webhook's link) becomes a link only as an absolute http(s) URL with a
    host, never `javascript:`, `data:` or anything else a click would run or open as code.
    Whatever is refused is shown as text by the template."""
    text = str(address or "")
    if not _WEB_ADDRESS.fullmatch(text):
        return ""
    try:
        host = urlsplit(text).hostname
    except ValueError:  # an unparseable address, such as an unclosed "[" IPv6 host
        return ""
    return text if host else ""
