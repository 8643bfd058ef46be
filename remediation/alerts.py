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
  ticket waiting to be verified succeeds on it (remediation.executions.verification)
  when the alert can vouch for it (verifiable_by).

An alert is only ever known on, counted on or resolved on a ticket of the host and
category it names. The tickets alerts open have ids in their own namespace (AM-, WH-:
remediation.models.ALERT_TICKET_PREFIXES), which no integrator can open; within it, the
id carries Alertmanager's fingerprint as it is, or a digest of any other fingerprint and
its source, and the alert's nth ticket: an id already taken gets the next number.

Reading what the senders post is remediation.alert_payloads' (plain functions);
receive_alert is the one use case every receiver calls with what they read.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from governance.audit import permissions
from governance.audit.changes import require_permission
from governance.audit.errors import Conflict
from governance.audit.log import PendingEvent, append_events, event, user_actor
from remediation.alert_payloads import FINGERPRINT_LENGTH, AlertReport, runbook_parameters
from remediation.choices import TICKET_OPEN_STATUSES, Category
from remediation.executions.verification import verify_with_resolved_alert
from remediation.intake import ExternalTicket, TicketConflict, open_external_ticket
from remediation.models import (
    ALERT_TICKET_PREFIXES,
    Alert,
    AlertStatus,
    Host,
    Ticket,
    TicketSource,
)

# Alertmanager's own fingerprints (16 hex digits) stand in ticket ids as they are; any other
# is a digest of 20 hex digits, so the two forms never meet.
ALERTMANAGER_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
DIGEST_LENGTH = 20
# How many taken ids an alert's ticket skips before the alert is refused.
MAX_ID_ATTEMPTS = 20


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
        # Only this host's alert in this category: the same fingerprint on another host's
        # ticket (or in another category) is another alert, never counted or resolved here.
        known = (
            Alert.objects.select_for_update(of=("self",))
            .select_related("ticket", "ticket__host")
            .filter(
                source=report.source,
                fingerprint=report.fingerprint,
                ticket__host=host,
                ticket__category=report.category,
            )
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
        ticket = _open_ticket(host, report, user, now)
        if ticket is not None:
            _store(report, ticket, now)
            return AlertOutcome(
                report.fingerprint, "opened", f"opened {ticket.ticket_id}", ticket.ticket_id
            )
        ticket = (  # another delivery opened it first: count on it
            Ticket.objects.select_for_update()
            .filter(host=host, category=report.category, status__in=list(TICKET_OPEN_STATUSES))
            .get()
        )
    alert = _store(report, ticket, now)
    _count_on(ticket, now)
    events.append(
        _event(
            user,
            "alert.counted",
            ticket,
            f"{report.name} on {host.name} counted on {ticket.ticket_id}",
            alert,
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
                known,
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
            known,
        )
    )
    verified = 0
    if verifiable_by(known, report):
        verified = verify_with_resolved_alert(
            ticket,
            # when it began (when it was first received, if it says no start)
            known.starts_at or known.first_received_at,
            known.ends_at,
            f"{user_actor(user)} reported {known.name} resolved",
            now,
            events,
            alert_id=known.pk,
        )
    message = "resolved" + (f"; verified {verified} execution(s)" if verified else "")
    return AlertOutcome(report.fingerprint, "resolved", message, ticket.ticket_id)


def verifiable_by(alert: Alert, report: AlertReport) -> bool:
    """May the resolved `alert` vouch for its ticket's fixes at all? Only an alert about the
    same host and category as the ticket, that says when it ended; whether it spans each
    fix is judged under the executions' locks (verification.verify_with_resolved_alert)."""
    ticket = alert.ticket
    same_problem = (ticket.host.name, ticket.category) == (report.host, report.category)
    return same_problem and alert.ends_at is not None


def alert_ticket_id(source: str, fingerprint: str, number: int) -> str:
    """The id of an alert's `number`th ticket, in the alerts' namespace."""
    key = (
        fingerprint
        if ALERTMANAGER_FINGERPRINT.match(fingerprint)
        else hashlib.sha256(f"{source}\n{fingerprint}".encode()).hexdigest()[:DIGEST_LENGTH]
    )
    return f"{ALERT_TICKET_PREFIXES[source]}{key}-{number}"


def _open_ticket(host: Host, report: AlertReport, user: Any, now: datetime) -> Ticket | None:
    """Open the alert's ticket under the first free id of its own; None when the host's
    open ticket in the category was opened meanwhile (the alert counts on it then)."""
    # The alert's nth ticket: the same alert firing after its ticket closed opens another.
    number = Alert.objects.filter(source=report.source, fingerprint=report.fingerprint).count()
    for attempt in range(1, MAX_ID_ATTEMPTS + 1):
        ticket_id = alert_ticket_id(report.source, report.fingerprint, number + attempt)
        if Ticket.objects.filter(ticket_id=ticket_id).exists():
            continue  # taken (a ticket from before the namespace, or another host's alert)
        try:
            return open_external_ticket(_as_ticket(report, ticket_id), user=user, now=now).ticket
        except TicketConflict as exc:
            if exc.code != "duplicate":
                return None
    raise Conflict(
        "ticket_ids_taken",
        f"The next {MAX_ID_ATTEMPTS} ticket ids of alert {report.fingerprint} are taken.",
    )


def _as_ticket(report: AlertReport, ticket_id: str) -> ExternalTicket:
    title = report.title or f"{report.name} on {report.host}"
    return ExternalTicket(
        ticket_id=ticket_id,
        host=report.host,
        category=report.category,
        title=title[:200],
        description=report.description or title,
        priority=report.priority,
        enable_auto_remediation=report.enable_auto_remediation,
        source=TicketSource.ALERT.value,
        parameters=runbook_parameters(report.labels),
        # Its labels are stored once, on the alert's row; the audit keeps their digest.
        details={
            "alert": report.name,
            "fingerprint": report.fingerprint,
            "labels_sha256": labels_digest(report.labels),
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


def labels_digest(labels: dict[str, str]) -> str:
    """SHA-256 of the labels as canonical JSON: what the audit keeps of them."""
    canonical = json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _event(user: Any, action: str, ticket: Ticket, summary: str, alert: Alert) -> Any:
    """An alert's audit event names the alert's row, where its labels are stored once."""
    return event(
        user_actor(user),
        action,
        ticket,
        summary,
        ticket_id=ticket.ticket_id,
        data={
            "alert_id": alert.pk,
            "source": alert.source,
            "fingerprint": alert.fingerprint,
            "alert": alert.name,
            "status": alert.status,
            "labels_sha256": labels_digest(alert.labels),
        },
    )
