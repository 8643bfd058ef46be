"""What monitoring systems send, read as alerts: plain functions, no database.

An Alertmanager webhook (version 4) body, or any JSON through the configured field map
(settings.WARDEN_ALERT_WEBHOOK_FIELDS), becomes one AlertReport per alert: the host and
category it names (by labels, settings.WARDEN_ALERT_*), its fingerprint and status, and
the paths in the sender's body they came from, so an error names what to fix. Each alert
is checked on its own: its timestamps (real ones, with an offset, not ahead of Warden's
clock), its ids and the size of its labels and annotations (stored once, on its row). What
is done with a report is remediation.alerts'.
"""

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from governance.audit.errors import Invalid
from remediation.choices import Category, Priority
from remediation.models import Alert, AlertSource, AlertStatus

MAX_ALERTS = 1000
FINGERPRINT_LENGTH = Alert._meta.get_field("fingerprint").max_length
# What one alert may carry: its labels and annotations are stored once, on its row.
MAX_LABELS = 64
MAX_ANNOTATIONS = 32
MAX_NAME_LENGTH = 128
MAX_LABEL_LENGTH = 1024
MAX_ANNOTATION_LENGTH = 8192
MAX_ALERT_BYTES = 32_768  # labels and annotations together, as JSON
# An alert older than this is no alert of now: its timestamps are refused.
OLDEST = timedelta(days=366)
# Control characters (NUL above all: PostgreSQL stores none) are refused in what is stored.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
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


def timestamp(
    value: Any, where: str, now: datetime, errors: dict[str, list[str]]
) -> datetime | None:
    """An RFC 3339 timestamp no older than OLDEST and not ahead of the server's clock by
    more than WARDEN_ALERT_CLOCK_TOLERANCE_SECONDS; None when absent or Go's zero time
    (Alertmanager's "0001-01-01T00:00:00Z"). A bad one is added to `errors` at `where`."""
    if not value:
        return None
    try:
        parsed = parse_datetime(str(value))
    except ValueError:  # well formed but impossible: 2026-02-30, T25:00, +99:00
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors[where] = [
            f"{str(value)[:40]!r} is not a timestamp: give one with its offset, "
            "as 2026-12-02T01:00:00Z."
        ]
        return None
    if parsed.year == 1:
        return None
    tolerance = timedelta(seconds=settings.WARDEN_ALERT_CLOCK_TOLERANCE_SECONDS)
    if parsed > now + tolerance:
        errors[where] = [
            f"{value} is ahead of Warden's clock ({now.isoformat(timespec='seconds')}) by more "
            f"than {tolerance.total_seconds():g} s (WARDEN_ALERT_CLOCK_TOLERANCE_SECONDS)."
        ]
        return None
    if parsed < now - OLDEST:
        errors[where] = [f"{value} is more than {OLDEST.days} days ago."]
        return None
    return parsed


def size_problems(
    labels: Mapping[str, Any], annotations: Mapping[str, Any], path: str
) -> dict[str, list[str]]:
    """Why an alert's labels and annotations are too much to store, by field path, or {}."""
    errors: dict[str, list[str]] = {}
    for kind, pairs, most, longest in (
        ("labels", labels, MAX_LABELS, MAX_LABEL_LENGTH),
        ("annotations", annotations, MAX_ANNOTATIONS, MAX_ANNOTATION_LENGTH),
    ):
        if len(pairs) > most:
            errors[f"{path}.{kind}"] = [f"At most {most} {kind}, not {len(pairs)}."]
            continue
        for name, value in pairs.items():
            where = f"{path}.{kind}.{str(name)[:MAX_NAME_LENGTH]}"
            if not name or len(name) > MAX_NAME_LENGTH or CONTROL.search(name):
                errors[where] = [
                    f"A name is 1 to {MAX_NAME_LENGTH} characters, none of them control characters."
                ]
            elif len(str(value)) > longest:
                errors[where] = [f"At most {longest} characters, not {len(str(value))}."]
            elif CONTROL.search(str(value)):
                errors[where] = ["No control characters."]
    if not errors:
        size = len(json.dumps([labels, annotations], ensure_ascii=False).encode())
        if size > MAX_ALERT_BYTES:
            errors[f"{path}.labels"] = [
                f"Labels and annotations are {size} bytes together; at most {MAX_ALERT_BYTES}."
            ]
    return errors


def control_problems(values: Mapping[str, str]) -> dict[str, list[str]]:
    """{path: message} for each value holding a control character."""
    return {
        where: ["No control characters."]
        for where, value in values.items()
        if CONTROL.search(value)
    }


def from_alertmanager(
    alert: Mapping[str, Any], common_labels: Mapping[str, str], path: str, now: datetime
) -> AlertReport:
    """One alert of an Alertmanager webhook (version 4) body, as its serializer checked it;
    raises AlertMappingError naming each field to fix."""
    labels = {**common_labels, **alert.get("labels", {})}
    annotations = dict(alert.get("annotations", {}))
    name = labels.get("alertname", "") or "alert"
    errors: dict[str, list[str]] = size_problems(labels, annotations, path)
    errors.update(
        control_problems(
            {
                f"{path}.fingerprint": str(alert.get("fingerprint", "")),
                f"{path}.generatorURL": str(alert.get("generatorURL", "")),
            }
        )
    )
    starts_at = timestamp(alert.get("startsAt"), f"{path}.startsAt", now, errors)
    ends_at = timestamp(alert.get("endsAt"), f"{path}.endsAt", now, errors)
    if alert["status"] != AlertStatus.RESOLVED:
        ends_at = None  # a firing alert's endsAt is only when it would lapse unrenewed
    elif starts_at and ends_at and ends_at < starts_at:
        errors[f"{path}.endsAt"] = [f"It ended before it started ({alert.get('startsAt')})."]
    if errors:
        raise AlertMappingError(errors)
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
        starts_at=starts_at,
        ends_at=ends_at,
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


def webhook_alerts(body: Any, fields: Mapping[str, str]) -> list[tuple[str, Any]]:
    """The posted alerts under the field map's "alerts" path, each with its error path
    (one that is not an object is refused on its own, by from_webhook)."""
    where = fields.get("alerts", "")
    alerts = dig(body, where) if where else body
    prefix = where or ""
    if isinstance(alerts, Mapping):
        return [(prefix, alerts)]
    if isinstance(alerts, list) and alerts:
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
    alert: Any, fields: Mapping[str, str], resolved: Sequence[str], path: str
) -> AlertReport:
    """One alert of a generic JSON webhook, through the configured field map."""
    if not isinstance(alert, Mapping):
        raise AlertMappingError({path or "non_field": ["Send each alert as a JSON object."]})

    def text(key: str) -> str:
        value = dig(alert, fields.get(key, "")) if fields.get(key) else None
        return "" if value is None or isinstance(value, dict | list) else str(value).strip()

    def at(key: str) -> str:
        return ".".join(p for p in (path, fields.get(key, key)) if p)

    errors = control_problems(
        {
            at(key): text(key)
            for key in ("fingerprint", "host", "category", "name", "title", "description", "link")
        }
    )
    for key in ("title", "description"):
        if len(text(key)) > MAX_ANNOTATION_LENGTH:
            errors[at(key)] = [f"At most {MAX_ANNOTATION_LENGTH} characters."]
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
    title, description = text("title"), text("description")
    annotations = {"title": title, "description": description} if title or description else {}
    if errors:
        raise AlertMappingError(errors)
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
        annotations=annotations,
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
