"""Tickets other systems open: an integrator's POST /api/v1/tickets, an alert receiver.

One way in for all of them: open_external_ticket checks the caller's permission and the
report, stores the ticket under the caller's own ticket_id and decides it through the
same engine as a ticket opened from an agent's metrics (remediation.decision_outcomes'
act_on_decision: recorded, queued, sent for approval or escalated), audited in one
transaction. An alert's ticket is decided at once; an integrator's (the seed's API) is
stored `processing` and decided after its text is triaged in a django-q2 task
(remediation.triage), which calls decide_reported_ticket here: the one way both are
decided.

The seed's rule: automatic remediation is off for such a ticket unless its caller sets
`enable_auto_remediation`. What stands in for the model's verdict is the host's own
newest reading when it is fresh (received within WARDEN_READING_MAX_AGE_SECONDS) and
shows the reported problem; without one, no model vouches for the report, so the ticket
needs a person (never less cautious than the evidence). The pattern signal is the words
of the ticket's text, not a model's explanation.
"""

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django_q.tasks import async_task

from feedback import patterns
from governance.audit import permissions
from governance.audit.changes import require_permission
from governance.audit.errors import Conflict
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.choices import SecuritySeverity
from governance.decisions.deciding import decide_on_sample, decide_ticket
from governance.decisions.stats import newest_sample
from governance.models import Decision
from remediation.choices import TICKET_OPEN_STATUSES, Category, Priority, TicketStatus
from remediation.decision_outcomes import act_on_decision
from remediation.models import (
    ALERT_TICKET_PREFIXES,
    Host,
    Ticket,
    TicketSource,
    in_alert_namespace,
)
from scoring.choices import Severity
from scoring.models import MetricSample
from scoring.samples import reading_is_fresh, sample_shows_problem

# What opening a ticket needs, by who reports it: an alert sender sends alerts (which open
# tickets) and cannot open tickets of its own making; an integrator opens them.
PERMISSION_BY_SOURCE = {
    TicketSource.INTEGRATOR.value: permissions.OPEN_TICKET,
    TicketSource.ALERT.value: "remediation.add_alert",
}
# A caller's ticket_id goes into URLs (/api/v1/tickets/{ticket_id}): no dots or slashes.
TICKET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_:-]{0,31}$")
# Warden numbers its own tickets INC-000123 (remediation.metric_tickets.next_ticket_id): an
# outside ticket with such an id would collide with one Warden opens later.
OWN_NUMBERS = re.compile(r"^INC-\d{6,}$")
MAX_IMPACT_MINUTES = 525_600.0  # a year
TITLE_LENGTH = Ticket._meta.get_field("title").max_length
PARAMETER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
MAX_PARAMETERS = 20
PARAMETER_LENGTH = 200
# The django-q2 task that triages `processing` tickets in batches (remediation.triage).
TRIAGE_TASK = "remediation.tasks.triage_tickets"


def parameter_problems(parameters: Any) -> str:
    """Why `parameters` cannot be a ticket's runbook parameters, or ""."""
    if not isinstance(parameters, dict) or len(parameters) > MAX_PARAMETERS:
        return f"At most {MAX_PARAMETERS} name: value pairs."
    for name, value in parameters.items():
        if not (isinstance(name, str) and PARAMETER_NAME.match(name)):
            return f"{name!r}: a name is lower-case letters, digits and '_'."
        if not isinstance(value, str) or not 0 < len(value) <= PARAMETER_LENGTH:
            return f"{name}: a value is text of 1 to {PARAMETER_LENGTH} characters."
    return ""


@dataclass(frozen=True)
class ExternalTicket:
    """A ticket as another system reports it (the seed's ticket body).

    `host` names a registered host, or is "" when the report names none (the seed's
    body): the triage infers it from the text or a person names it; `category` may be
    "" only for a ticket triaged first (the triage reads one, or a person picks it);
    `source` says which
    kind of system reported it (TicketSource.INTEGRATOR for the API, TicketSource.ALERT
    for an alert receiver).
    """

    ticket_id: str
    host: str
    category: str
    description: str = ""
    title: str = ""
    priority: str = Priority.MEDIUM.value
    enable_auto_remediation: bool = False
    affects_billing: bool = False
    data_integrity: bool = False
    customer_impact_minutes: float = 0.0
    security_severity: str = SecuritySeverity.NONE.value
    source: str = TicketSource.INTEGRATOR.value
    # Anything else the caller wants on the record (an alert's labels, a link back).
    details: dict[str, Any] = field(default_factory=dict)
    # What a runbook's command takes ({address:ip} -> "address"); checked by type when
    # the runbook is decided, so a bad value escalates instead of running.
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenedTicket:
    ticket: Ticket
    decision: Decision | None  # None: stored `processing`, decided after its triage


class TicketConflict(Conflict):
    """The ticket cannot be opened because of one already stored (HTTP 409).

    `code`: "duplicate" (the ticket_id is taken) or "open_ticket_exists" (the host has an
    open ticket in the category: repeats count on it); `fields` names what conflicts, each
    with the message; `ticket` is the stored one, so a caller can link to it or count on it.
    """

    def __init__(self, code: str, message: str, fields: tuple[str, ...], ticket: Ticket) -> None:
        super().__init__(code, message, {name: [message] for name in fields})
        self.ticket = ticket


def check_external_ticket(report: ExternalTicket, *, triage_first: bool = False) -> Host | None:
    """The registered host the report names (None when it names none); raises
    ValidationError naming each bad field. `triage_first`: the category may be left out,
    for the triage to read from the text."""
    errors: dict[str, str] = {}
    if not TICKET_ID.match(report.ticket_id or ""):
        errors["ticket_id"] = (
            "Give 1 to 32 letters, digits, '-', '_' or ':', starting with a letter or digit."
        )
    elif OWN_NUMBERS.match(report.ticket_id):
        errors["ticket_id"] = (
            f"{report.ticket_id} looks like Warden's own numbering (INC- and six or more "
            "digits), kept for the tickets Warden opens: use your system's own prefix."
        )
    elif in_alert_namespace(report.ticket_id) != (report.source == TicketSource.ALERT):
        errors["ticket_id"] = (
            f"{report.ticket_id}: ids starting {' or '.join(ALERT_TICKET_PREFIXES.values())} "
            "are kept for the tickets alerts open, and only those: use your system's own prefix."
        )
    if report.category not in Category.values and not (triage_first and not report.category):
        errors["category"] = f"Unknown category {report.category!r} (known: {_known(Category)})."
    if report.priority not in Priority.values:
        errors["priority"] = f"Unknown priority {report.priority!r} (known: {_known(Priority)})."
    if report.security_severity not in SecuritySeverity.values:
        errors["security_severity"] = (
            f"Unknown security severity {report.security_severity!r} "
            f"(known: {_known(SecuritySeverity)})."
        )
    if report.source == TicketSource.METRICS or report.source not in TicketSource.values:
        errors["source"] = f"{report.source!r} is not a source other systems open tickets from."
    minutes = report.customer_impact_minutes
    if not (math.isfinite(minutes) and 0 <= minutes <= MAX_IMPACT_MINUTES):
        errors["customer_impact_minutes"] = f"Give 0 to {MAX_IMPACT_MINUTES:g} minutes."
    if not (report.title.strip() or report.description.strip()):
        errors["description"] = "Say what the problem is (a description, a title or both)."
    if len(report.title) > TITLE_LENGTH:
        errors["title"] = f"At most {TITLE_LENGTH} characters."
    if parameter_problems(report.parameters):
        errors["parameters"] = parameter_problems(report.parameters)
    host = Host.objects.filter(name=report.host).first() if report.host else None
    if report.host and host is None:
        errors["host"] = f"No registered host is named {report.host!r} (manage.py add_host)."
    if errors:
        raise ValidationError(errors)
    return host


def open_external_ticket(
    report: ExternalTicket, *, user: Any, now: datetime, triage_first: bool = False
) -> OpenedTicket:
    """Open `report` as a ticket in `user`'s name and decide it; returns it and its decision.

    `user` needs remediation.add_ticket, or remediation.add_alert for a ticket an alert
    opens (None: a local command or the system itself). `triage_first`: store it
    `processing` and decide it after a django-q2 task has triaged its text (the seed's
    API); a report naming no host is always stored so.
    Raises PermissionDenied, ValidationError naming each bad field, or TicketConflict
    when the ticket_id is taken or the host already has an open ticket in the category
    (nothing is stored then). The ticket, its decision, what the decision started
    (an approval request, a queued execution, an escalation) and their audit events
    commit together; queues and notices follow after the commit.
    """
    require_permission(
        user, PERMISSION_BY_SOURCE.get(report.source, permissions.OPEN_TICKET), "open tickets"
    )
    host = check_external_ticket(report, triage_first=triage_first)
    try:
        with transaction.atomic():
            # The host's row first, as a metrics batch takes it: the two cannot both open
            # the host's ticket in one category.
            if host is not None:
                host = Host.objects.select_for_update().get(pk=host.pk)
            _refuse_conflicts(report, host)
            if triage_first or host is None:
                return _store_for_triage(report, host, user, now)
            return _open(report, host, user, now)
    except IntegrityError:
        # Another request took the ticket_id (or the host's category) between our look and
        # our insert: name it as if we had seen it first.
        _refuse_conflicts(report, Host.objects.get(pk=host.pk) if host else None)
        raise


def enqueue_triage() -> None:
    """Ask a worker to triage the `processing` tickets (it takes them in batches)."""
    async_task(TRIAGE_TASK)


def _refuse_conflicts(report: ExternalTicket, host: Host | None) -> None:
    taken = Ticket.objects.filter(ticket_id=report.ticket_id).first()
    if taken is not None:
        raise TicketConflict(
            "duplicate",
            f"A ticket {report.ticket_id} already exists ({taken.get_status_display().lower()}).",
            ("ticket_id",),
            taken,
        )
    if host is None:
        return  # a host named later is checked then (remediation.triage)
    open_one = open_ticket_of(host, report.category)
    if open_one is not None:
        raise TicketConflict(
            "open_ticket_exists",
            f"{host.name} already has an open {report.category} ticket, {open_one.ticket_id} "
            f"({open_one.get_status_display().lower()}): one problem, one ticket.",
            ("host", "category"),
            open_one,
        )


def open_ticket_of(host: Host, category: str, excluding: Ticket | None = None) -> Ticket | None:
    """The host's open ticket in `category`, if any (one problem, one ticket)."""
    found = Ticket.objects.filter(
        host=host, category=category, status__in=list(TICKET_OPEN_STATUSES)
    ).select_related("host")
    if excluding is not None:
        found = found.exclude(pk=excluding.pk)
    return found.first()


def _store_for_triage(
    report: ExternalTicket, host: Host | None, user: Any, now: datetime
) -> OpenedTicket:
    """Store the ticket `processing` with its opening's event; a task triages it after
    the commit (remediation.triage), then decides it."""
    title = report.title.strip() or _title_from(report.description, host)
    ticket = _store_ticket(report, host, title, None, user, now, status=TicketStatus.PROCESSING)
    append_events([_opened_event(ticket, report, host, None, user_actor(user))])
    transaction.on_commit(enqueue_triage, robust=True)
    return OpenedTicket(ticket, None)


def _open(report: ExternalTicket, host: Host, user: Any, now: datetime) -> OpenedTicket:
    title = report.title.strip() or _title_from(report.description, host)
    reading = confirming_reading(host, report.category, now)
    ticket = _store_ticket(report, host, title, reading, user, now)
    events: list[PendingEvent] = [_opened_event(ticket, report, host, reading, user_actor(user))]
    decision = decide_reported_ticket(
        ticket, reading, reported_by=user_actor(user), now=now, events=events
    )
    append_events(events)
    return OpenedTicket(ticket, decision)


def confirming_reading(host: Host, category: str, now: datetime) -> MetricSample | None:
    """The host's newest reading when it is fresh and shows a `category` problem: its
    verdict stands in for the model's. None otherwise."""
    reading = newest_sample(host.pk)
    fresh = reading is not None and reading_is_fresh(reading, now)
    return reading if fresh and sample_shows_problem(reading, category) else None


def decide_reported_ticket(
    ticket: Ticket,
    confirmed_by: MetricSample | None,
    *,
    reported_by: str,
    now: datetime,
    events: list[PendingEvent],
) -> Decision:
    """Decide a stored ticket another system reported, on its host (the caller holds the
    host's row): on `confirmed_by`'s verdict, or as needing a person without one; then act
    on the decision. The caller appends `events`."""
    host = ticket.host
    occurrences: list[patterns.Occurrence] = []
    terms = patterns.text_terms(ticket.title, ticket.description)
    if confirmed_by is not None:
        decision = decide_on_sample(
            ticket,
            confirmed_by,
            model_version_id=confirmed_by.model_version_id,
            now=now,
            occurrences=occurrences,
            pattern_terms=terms,
        )
    else:
        decision = decide_ticket(
            ticket,
            severity=Severity.HITL_REQUIRED,
            confidence=0.0,
            explanation=[],
            now=now,
            occurrences=occurrences,
            pattern_terms=terms,
            statement=_unconfirmed(ticket, host, newest_sample(host.pk), now, reported_by),
        )
    act_on_decision(ticket, decision, now, events)
    # Last, the rows every host shares: the pattern, then the audit chain's head.
    patterns.record_occurrences(occurrences)
    return decision


def _store_ticket(
    report: ExternalTicket,
    host: Host | None,
    title: str,
    confirmed_by: MetricSample | None,
    user: Any,
    now: datetime,
    *,
    status: str = TicketStatus.OPEN,
) -> Ticket:
    """The reported ticket, saved with its history row; `confirmed_by` is the host's
    reading that shows the problem, whose verdict stands in for the model's."""
    confirmed = confirmed_by is not None
    ticket = Ticket(
        ticket_id=report.ticket_id,
        title=title,
        description=report.description,
        host=host,
        category=report.category,
        source=report.source,
        status=status,
        severity=confirmed_by.severity if confirmed else Severity.HITL_REQUIRED,
        confidence=confirmed_by.confidence if confirmed else 0.0,
        occurrence_count=1,
        enable_auto_remediation=report.enable_auto_remediation,
        priority=report.priority,
        affects_billing=report.affects_billing,
        data_integrity=report.data_integrity,
        customer_impact_minutes=report.customer_impact_minutes,
        security_severity=report.security_severity,
        parameters=dict(report.parameters),
        opened_at=now,
        last_seen_at=now,
        opened_by=user if report.source == TicketSource.INTEGRATOR else None,
    )
    ticket.full_clean(validate_unique=False, validate_constraints=False)  # checked above
    ticket._history_user = user
    ticket._change_reason = f"opened by {user_actor(user)} ({report.source})"
    ticket.save()
    return ticket


def _opened_event(
    ticket: Ticket,
    report: ExternalTicket,
    host: Host | None,
    confirmed_by: MetricSample | None,
    actor: str,
) -> PendingEvent:
    """The audit event of the opening: who reported what, and the reading that confirmed it."""
    return event(
        actor,
        "ticket.opened",
        ticket,
        f"{ticket.ticket_id} opened by {actor} ({ticket.get_source_display()}): {ticket.title}",
        ticket_id=ticket.ticket_id,
        data={
            "source": report.source,
            "host": host.name if host else None,
            "category": report.category,
            "priority": report.priority,
            "enable_auto_remediation": report.enable_auto_remediation,
            "escalation_facts": {
                "affects_billing": report.affects_billing,
                "data_integrity": report.data_integrity,
                "customer_impact_minutes": report.customer_impact_minutes,
                "security_severity": report.security_severity,
            },
            "confirmed_by_sample": confirmed_by.pk if confirmed_by is not None else None,
            # Whoever opened it never approves what it asks for (governance.approvals).
            "opened_by": ticket.opened_by.get_username() if ticket.opened_by else None,
            "details": report.details,
        },
    )


def _unconfirmed(
    ticket: Ticket, host: Host, reading: MetricSample | None, now: datetime, actor: str
) -> str:
    if reading is None:
        readings = f"Warden has no readings of {host.name}"
    elif not reading_is_fresh(reading, now):
        readings = f"{host.name}'s newest reading is too old to stand for it now"
    else:
        readings = f"{host.name}'s newest reading does not show a {ticket.category} problem"
    return (
        f"Reported by {actor} as {ticket.ticket_id}; {readings}, so no model verdict stands "
        f"behind it and a person decides ({Severity.HITL_REQUIRED.name})."
    )


def _title_from(description: str, host: Host | None) -> str:
    first = description.strip().splitlines()[0] if description.strip() else "Problem"
    suffix = f" on {host.name}" if host else ""
    return (first[: TITLE_LENGTH - len(suffix)] + suffix).strip()


def _known(choices: Any) -> str:
    return ", ".join(choices.values)
