"""What monitoring systems send, read as alerts: plain functions, no database.

An Alertmanager webhook (version 4) body, or any JSON through the configured field map
(settings.WARDEN_ALERT_WEBHOOK_FIELDS), becomes one AlertReport per alert: the host and
category it names (by labels, settings.WARDEN_ALERT_*), its fingerprint and status, and
the paths in the sender's body they came from, so an error names what to fix. What is
done with a report is remediation.alerts'.
"""

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from governance.audit.errors import Invalid
from remediation.choices import Category, Priority
from remediation.models import Alert, AlertSource, AlertStatus

MAX_ALERTS = 1000
FINGERPRINT_LENGTH = Alert._meta.get_field("fingerprint").max_length
PORT = re.compile(r":\d+$")
# Alertmanager's severity label, and common synonyms, as a ticket's priority.
PRIORITIES = {
    "critical": Priority.CRITICAL,
    "page": Priority.CRITICAL,
    "error": Priority.HIGH,
    "high": Priority.HIGH,
    "major": Priority.HIGH,
    "warning": Priority.MEDIUM,
    "medium": Priority.MEDIUM,
    "minor": Priority.LOW,
    "info": Priority.LOW,
    "low": Priority.LOW,
}
TRUE = {"true", "yes", "1", "on"}
# An alert label naming a runbook parameter: warden_address="203.0.113.7".
PARAMETER_LABEL = "warden_"


def describe(fields: Mapping[str, list[str]]) -> str:
    """Field errors as one line: "alerts[0].labels.instance: No registered host ..."."""
    return "; ".join(f"{path}: {' '.join(messages)}" for path, messages in fields.items())


class AlertMappingError(Invalid):
    """An alert Warden cannot place; `fields` maps a field path to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("invalid", describe(fields), fields)


@dataclass(frozen=True)
class AlertReport:
    """One alert as Warden understands it, whatever sent it.

    `*_field` are the paths in the sender's body the host and category came from, so an
    error names what the sender should fix.
    """

    source: str
    fingerprint: str
    status: str
    host: str
    category: str
    name: str
    title: str = ""
    description: str = ""
    priority: str = Priority.MEDIUM.value
    enable_auto_remediation: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    link: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    host_field: str = "host"
    category_field: str = "category"


def first_label(labels: Mapping[str, str], names: Sequence[str]) -> tuple[str, str] | None:
    """The first of `names` that `labels` has a non-empty value for, as (name, value)."""
    for name in names:
        value = str(labels.get(name) or "").strip()
        if value:
            return name, value
    return None


def host_name(value: str) -> str:
    """`instance` is host:port in Prometheus; the host's name is what comes before it."""
    return PORT.sub("", value.strip())


def category_of(
    labels: Mapping[str, str], alert_name: str, label_names: Sequence[str], by_name: Mapping
) -> tuple[str, str] | None:
    """(where it came from, category): a category label first, else the alert's name."""
    found = first_label(labels, label_names)
    if found:
        return found[0], found[1].lower()
    if alert_name in by_name:
        return "alertname", by_name[alert_name]
    return None


def priority_of(value: str) -> str:
    return PRIORITIES.get(value.strip().lower(), Priority.MEDIUM).value


def _when(value: Any) -> datetime | None:
    """A timestamp, or None for Alertmanager's zero time (a firing alert's endsAt)."""
    if isinstance(value, datetime):
        parsed = value
    elif value:
        parsed = parse_datetime(str(value))
    else:
        return None
    if parsed is None or parsed.year < 1971:
        return None
    return parsed


def from_alertmanager(
    alert: Mapping[str, Any], common_labels: Mapping[str, str], path: str
) -> AlertReport:
    """One alert of an Alertmanager webhook (version 4) body; raises AlertMappingError."""
    labels = {**common_labels, **alert.get("labels", {})}
    annotations = dict(alert.get("annotations", {}))
    name = labels.get("alertname", "") or "alert"
    errors: dict[str, list[str]] = {}
    host = first_label(labels, settings.WARDEN_ALERT_HOST_LABELS)
    if host is None:
        errors[f"{path}.labels"] = [
            "No label names the host: give one of "
            + ", ".join(settings.WARDEN_ALERT_HOST_LABELS)
            + " (WARDEN_ALERT_HOST_LABELS)."
        ]
    category = category_of(
        labels, name, settings.WARDEN_ALERT_CATEGORY_LABELS, settings.WARDEN_ALERT_CATEGORIES
    )
    if category is None:
        errors[f"{path}.labels.alertname"] = [
            f"No category for {name!r}: give a "
            + " or ".join(settings.WARDEN_ALERT_CATEGORY_LABELS)
            + f" label ({', '.join(Category.values)}) or map the name in "
            "WARDEN_ALERT_CATEGORIES."
        ]
    if errors:
        raise AlertMappingError(errors)
    wants = str(labels.get("warden_auto_remediation", "")).strip().lower()
    return AlertReport(
        source=AlertSource.ALERTMANAGER.value,
        fingerprint=str(alert["fingerprint"]),
        status=alert["status"],
        host=host_name(host[1]),
        category=category[1],
        name=name[:200],
        title=annotations.get("summary", ""),
        description=annotations.get("description", "") or annotations.get("message", ""),
        priority=priority_of(labels.get("severity", "")),
        enable_auto_remediation=wants in TRUE if wants else settings.WARDEN_ALERT_AUTO_REMEDIATION,
        labels=labels,
        annotations=annotations,
        link=str(alert.get("generatorURL", ""))[:500],
        starts_at=_when(alert.get("startsAt")),
        ends_at=_when(alert.get("endsAt")),
        host_field=f"{path}.labels.{host[0]}",
        category_field=f"{path}.labels.{category[0]}",
    )


def dig(body: Any, path: str) -> Any:
    """The value at a dotted path ("host.name", "tags.0"), or None."""
    value = body
    for part in (p for p in path.split(".") if p):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def webhook_alerts(body: Any, fields: Mapping[str, str]) -> list[tuple[str, Mapping]]:
    """The posted alerts under the field map's "alerts" path, each with its error path."""
    where = fields.get("alerts", "")
    alerts = dig(body, where) if where else body
    prefix = where or ""
    if isinstance(alerts, Mapping):
        return [(prefix, alerts)]
    if isinstance(alerts, list) and alerts and all(isinstance(a, Mapping) for a in alerts):
        return [(f"{prefix}[{i}]", alert) for i, alert in enumerate(alerts)]
    raise AlertMappingError(
        {
            where or "non_field": [
                "Send an alert object or a non-empty list of them"
                + (f" at {where!r}" if where else "")
                + " (WARDEN_ALERT_WEBHOOK_FIELDS)."
            ]
        }
    )


def from_webhook(
    alert: Mapping[str, Any], fields: Mapping[str, str], resolved: Sequence[str], path: str
) -> AlertReport:
    """One alert of a generic JSON webhook, through the configured field map."""

    def text(key: str) -> str:
        value = dig(alert, fields.get(key, "")) if fields.get(key) else None
        return "" if value is None or isinstance(value, dict | list) else str(value).strip()

    def at(key: str) -> str:
        return ".".join(p for p in (path, fields.get(key, key)) if p)

    errors: dict[str, list[str]] = {}
    host, category, name = text("host"), text("category").lower(), text("name")
    if not host:
        errors[at("host")] = ["Name the alert's host (WARDEN_ALERT_WEBHOOK_FIELDS['host'])."]
    if not category and name in settings.WARDEN_ALERT_CATEGORIES:
        category = settings.WARDEN_ALERT_CATEGORIES[name]
    if not category:
        errors[at("category")] = [
            f"Give the alert's category ({', '.join(Category.values)}) or a name mapped in "
            "WARDEN_ALERT_CATEGORIES."
        ]
    if errors:
        raise AlertMappingError(errors)
    title, description = text("title"), text("description")
    # Without an id of its own, the alert is known by what it says about which host.
    fingerprint = (
        text("fingerprint")
        or hashlib.sha256(f"{host}\n{category}\n{name}\n{title}".encode()).hexdigest()[:16]
    )
    status = text("status").lower()
    wants = text("auto_remediation").lower()
    return AlertReport(
        source=AlertSource.WEBHOOK.value,
        fingerprint=fingerprint,
        status=AlertStatus.RESOLVED.value if status in resolved else AlertStatus.FIRING.value,
        host=host_name(host),
        category=category,
        name=(name or title or "alert")[:200],
        title=title,
        description=description,
        priority=priority_of(text("priority")),
        enable_auto_remediation=wants in TRUE if wants else settings.WARDEN_ALERT_AUTO_REMEDIATION,
        annotations={"title": title, "description": description} if title or description else {},
        link=text("link")[:500],
        host_field=at("host"),
        category_field=at("category"),
    )


def runbook_parameters(labels: Mapping[str, Any]) -> dict[str, str]:
    """A runbook's parameters from an alert's labels: warden_address="203.0.113.7" gives
    the block runbook its {address:ip}. Labels that say which host, which category and
    whether it may heal by itself are not parameters. Invalid ones are refused with the
    alert's other field errors (intake.check_external_ticket)."""
    not_parameters = {
        "warden_auto_remediation",
        *settings.WARDEN_ALERT_HOST_LABELS,
        *settings.WARDEN_ALERT_CATEGORY_LABELS,
    }
    return {
        name.removeprefix(PARAMETER_LABEL): str(value)
        for name, value in labels.items()
        if name.startswith(PARAMETER_LABEL) and name not in not_parameters
    }
