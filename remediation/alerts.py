"""Alerts in: Alertmanager's webhook and other monitoring systems' JSON, as tickets.

An alert names its host and category by labels (settings.WARDEN_ALERT_*), and each one
is received on its own, in one transaction under the host's row lock, so a pair of
Alertmanagers sending the same group at once cannot open two tickets:

- firing, new: opens a ticket through remediation.intake (the same engine and rules as
  an integrator's ticket: automatic remediation only if asked for), or is counted on the
  host's open ticket in the category when there is one (one problem, one ticket);
- firing, known by its fingerprint on an open ticket: a re-delivery, counted on the
  alert's row and not on the ticket; firing again after it resolved counts once more;
- resolved: ends the alert; it is evidence for verification, so an execution of its
  ticket waiting to be verified succeeds on it (remediation.executions).

Parsing and mapping are plain functions; receive_alert is the one use case every
receiver calls.
"""

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils.dateparse import parse_datetime

from governance.audit import permissions
from governance.audit.changes import require_permission
from governance.audit.log import PendingEvent, append_events, event, user_actor
from remediation.choices import TICKET_OPEN_STATUSES, Category, Priority
from remediation.executions import verify_with_resolved_alert
from remediation.intake import ExternalTicket, TicketConflict, open_external_ticket
from remediation.models import Alert, AlertSource, AlertStatus, Host, Ticket, TicketSource

MAX_ALERTS = 1000
FINGERPRINT_LENGTH = Alert._meta.get_field("fingerprint").max_length
PORT = re.compile(r":\d+$")
SHORT_FINGERPRINT = re.compile(r"^[A-Za-z0-9]{1,16}$")
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


def describe(fields: Mapping[str, list[str]]) -> str:
    """Field errors as one line: "alerts[0].labels.instance: No registered host ..."."""
    return "; ".join(f"{path}: {' '.join(messages)}" for path, messages in fields.items())


class AlertMappingError(Exception):
    """An alert Warden cannot place; `fields` maps a field path to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__(describe(fields))
        self.fields = fields


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


@dataclass(frozen=True)
class AlertOutcome:
    """What became of one alert: opened | counted | repeated | resolved | ignored."""

    fingerprint: str
    outcome: str
    message: str
    ticket_id: str | None = None


# -- mapping (plain functions) ---------------------------------------------------------


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


# -- the use case -----------------------------------------------------------------------


def receive_alert(report: AlertReport, *, user: Any, now: datetime) -> AlertOutcome:
    """Receive one alert as `user` (needs remediation.add_alert): open, count or resolve.

    Raises PermissionDenied, or ValidationError naming the sender's field for a host or
    category Warden does not know. Nothing is stored then.
    """
    require_permission(user, permissions.RECEIVE_ALERTS, "send alerts")
    host = _check(report)
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        known = (
            Alert.objects.select_for_update(of=("self",))
            .select_related("ticket")
            .filter(source=report.source, fingerprint=report.fingerprint)
            .order_by("-first_received_at", "-pk")
            .first()
        )
        events: list[PendingEvent] = []
        if report.status == AlertStatus.RESOLVED:
            outcome = _resolve(known, report, user, now, events)
        elif known is not None and known.ticket.is_open:
            outcome = _repeat(known, report, user, now, events)
        else:
            outcome = _fire(host, report, user, now, events)
        append_events(events)
        return outcome


def _check(report: AlertReport) -> Host:
    errors: dict[str, list[str]] = {}
    if len(report.fingerprint) > FINGERPRINT_LENGTH or not report.fingerprint:
        errors["fingerprint"] = [f"Give 1 to {FINGERPRINT_LENGTH} characters."]
    if report.category not in Category.values:
        errors[report.category_field] = [
            f"Unknown category {report.category!r} (known: {', '.join(Category.values)})."
        ]
    host = Host.objects.filter(name=report.host).first()
    if host is None:
        errors[report.host_field] = [
            f"No registered host is named {report.host!r} (manage.py add_host)."
        ]
    if errors:
        raise ValidationError(errors)
    return host


def _fire(
    host: Host, report: AlertReport, user: Any, now: datetime, events: list[PendingEvent]
) -> AlertOutcome:
    """A new alert: counted on the host's open ticket in its category, or opens one."""
    ticket = (
        Ticket.objects.select_for_update()
        .filter(host=host, category=report.category, status__in=list(TICKET_OPEN_STATUSES))
        .first()
    )
    if ticket is None:
        try:
            ticket = open_external_ticket(_as_ticket(report), user=user, now=now).ticket
        except TicketConflict as exc:
            if not exc.ticket.is_open:
                raise
            ticket = exc.ticket  # another delivery opened it first: count on it
        else:
            _store(report, ticket, now)
            return AlertOutcome(
                report.fingerprint, "opened", f"opened {ticket.ticket_id}", ticket.ticket_id
            )
    _store(report, ticket, now)
    _count_on(ticket, now)
    events.append(
        _event(
            user,
            "alert.counted",
            ticket,
            f"{report.name} on {host.name} counted on {ticket.ticket_id}",
            report,
        )
    )
    return AlertOutcome(
        report.fingerprint,
        "counted",
        f"counted on {ticket.ticket_id}, the open {report.category} ticket of {host.name}",
        ticket.ticket_id,
    )


def _repeat(
    known: Alert, report: AlertReport, user: Any, now: datetime, events: list[PendingEvent]
) -> AlertOutcome:
    """The same alert again while its ticket is open: a re-delivery, or firing again."""
    refired = known.status == AlertStatus.RESOLVED
    known.received_count += 1
    known.last_received_at = now
    known.status = AlertStatus.FIRING
    if refired:
        known.starts_at = report.starts_at
        known.ends_at = None
        _count_on(known.ticket, now)
        events.append(
            _event(
                user,
                "alert.refired",
                known.ticket,
                f"{known.name} fired again on {known.ticket.host.name} ({known.ticket.ticket_id})",
                report,
            )
        )
    known.save()
    what = "fired again" if refired else "already counted"
    return AlertOutcome(
        report.fingerprint, "counted" if refired else "repeated", what, known.ticket.ticket_id
    )


def _resolve(
    known: Alert | None, report: AlertReport, user: Any, now: datetime, events: list[PendingEvent]
) -> AlertOutcome:
    """The alert ended: kept on its row, audited, and evidence for a waiting verification."""
    if known is None:
        return AlertOutcome(report.fingerprint, "ignored", "no alert with this fingerprint")
    known.received_count += 1
    known.last_received_at = now
    if known.status == AlertStatus.RESOLVED:
        known.save(update_fields=["received_count", "last_received_at"])
        return AlertOutcome(
            report.fingerprint, "repeated", "already resolved", known.ticket.ticket_id
        )
    known.status = AlertStatus.RESOLVED
    known.ends_at = report.ends_at or now
    known.save()
    ticket = known.ticket
    events.append(
        _event(
            user,
            "alert.resolved",
            ticket,
            f"{known.name} on {ticket.host.name} resolved ({ticket.ticket_id})",
            report,
        )
    )
    verified = verify_with_resolved_alert(
        ticket,
        known.ends_at,
        f"{user_actor(user)} reported {known.name} resolved",
        now,
        events,
        alert_id=known.pk,
    )
    message = "resolved" + (f"; verified {verified} execution(s)" if verified else "")
    return AlertOutcome(report.fingerprint, "resolved", message, ticket.ticket_id)


PARAMETER_LABEL = "warden_"


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


def _as_ticket(report: AlertReport) -> ExternalTicket:
    prefix = "AM" if report.source == AlertSource.ALERTMANAGER else "WH"
    short = (
        report.fingerprint
        if SHORT_FINGERPRINT.match(report.fingerprint)
        else hashlib.sha256(report.fingerprint.encode()).hexdigest()[:16]
    )
    # The alert's nth ticket: the same alert firing after its ticket closed opens another.
    number = Alert.objects.filter(source=report.source, fingerprint=report.fingerprint).count()
    title = report.title or f"{report.name} on {report.host}"
    return ExternalTicket(
        ticket_id=f"{prefix}-{short}-{number + 1}",
        host=report.host,
        category=report.category,
        title=title[:200],
        description=report.description or title,
        priority=report.priority,
        enable_auto_remediation=report.enable_auto_remediation,
        source=TicketSource.ALERT.value,
        parameters=runbook_parameters(report.labels),
        details={
            "alert": report.name,
            "fingerprint": report.fingerprint,
            "labels": report.labels,
            "link": report.link,
        },
    )


def _store(report: AlertReport, ticket: Ticket, now: datetime) -> Alert:
    return Alert.objects.create(
        source=report.source,
        fingerprint=report.fingerprint,
        ticket=ticket,
        name=report.name,
        status=report.status,
        labels=report.labels,
        annotations=report.annotations,
        link=report.link,
        starts_at=report.starts_at,
        ends_at=report.ends_at,
        first_received_at=now,
        last_received_at=now,
    )


def _count_on(ticket: Ticket, now: datetime) -> None:
    """One more occurrence on the ticket: bookkeeping, so a plain UPDATE and no history."""
    Ticket.objects.filter(pk=ticket.pk).update(
        occurrence_count=F("occurrence_count") + 1, last_seen_at=now
    )


def _event(user: Any, action: str, ticket: Ticket, summary: str, report: AlertReport) -> Any:
    return event(
        user_actor(user),
        action,
        ticket,
        summary,
        ticket_id=ticket.ticket_id,
        data={
            "source": report.source,
            "fingerprint": report.fingerprint,
            "alert": report.name,
            "status": report.status,
            "labels": report.labels,
            "link": report.link,
        },
    )
