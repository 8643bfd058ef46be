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
  ticket waiting to be verified succeeds on it (remediation.executions.verification).

Reading what the senders post is remediation.alert_payloads' (plain functions);
receive_alert is the one use case every receiver calls with what they read.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from governance.audit import permissions
from governance.audit.changes import require_permission
from governance.audit.log import PendingEvent, append_events, event, user_actor
from remediation.alert_payloads import FINGERPRINT_LENGTH, AlertReport, runbook_parameters
from remediation.choices import TICKET_OPEN_STATUSES, Category
from remediation.executions.verification import verify_with_resolved_alert
from remediation.intake import ExternalTicket, TicketConflict, open_external_ticket
from remediation.models import Alert, AlertSource, AlertStatus, Host, Ticket, TicketSource

SHORT_FINGERPRINT = re.compile(r"^[A-Za-z0-9]{1,16}$")


@dataclass(frozen=True)
class AlertOutcome:
    """What became of one alert: opened | counted | repeated | resolved | ignored."""

    fingerprint: str
    outcome: str
    message: str
    ticket_id: str | None = None


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
