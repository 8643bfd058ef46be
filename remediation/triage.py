"""Tickets in people's words: triaged in django-q2 tasks, then decided like any other.

POST /api/v1/tickets stores a ticket `processing` (remediation.intake) and, once that
commits, asks for remediation.tasks.triage_tickets. The task takes up to a batch of
`processing` tickets, oldest first (rows another worker holds are skipped), asks the
text triage model (scoring.triage.serving) once for the whole batch and once for the
similar resolved incidents, and for each ticket records what it suggested, infers the
host when the text names exactly one registered host, and then:

- with a host, decides the ticket through intake's decide_reported_ticket, the path an
  alert's ticket takes inline;
- without one, escalates it ("no host named: a person names it"); it waits until a
  person names the host (name_host: the admin's "Name the host" and
  POST /api/v1/tickets/{id}/host), and is decided then.

With no approved triage model the tickets are still decided, with no suggestion (the
triage records "no model"). A task that was lost leaves tickets `processing`: the
sweeper enqueues the task again for those older than WARDEN_TRIAGE_REQUEUE_SECONDS.
"""

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.errors import Conflict, Invalid, Unavailable
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.audit.tickets import escalate_ticket
from governance.models import Decision
from remediation.choices import Category, TicketStatus
from remediation.intake import (
    confirming_reading,
    decide_reported_ticket,
    enqueue_triage,
    open_ticket_of,
)
from remediation.models import Host, Ticket
from scoring.triage import serving
from scoring.triage.serving import SimilarIncident, TextTriage, similar_incidents, triage_texts

logger = logging.getLogger(__name__)

NO_HOST_REASON = "no host named: a person names it"
NO_CATEGORY_REASON = "no category read from its text: a person picks one"
NO_MODEL = "no model"
SIMILAR_LIMIT = 3


def ticket_text(ticket: Ticket) -> str:
    """What the triage model reads of a ticket: its title and description."""
    return serving.ticket_text(ticket.title, ticket.description)


def triage_pending(now: datetime, *, batch_size: int | None = None) -> int:
    """Triage up to `batch_size` `processing` tickets, oldest first, in one model call;
    returns how many it finished. Enqueues itself again when more are waiting.

    The model runs outside any transaction, then each ticket is finished in a transaction
    of its own: the audit chain's head (which every API request that writes also takes)
    is held for one ticket at a time, never for a whole batch. A ticket another worker
    holds or has finished meanwhile is skipped (its status is read again under its lock).
    """
    size = batch_size or settings.WARDEN_TRIAGE_BATCH_SIZE
    batch = list(
        Ticket.objects.filter(status=TicketStatus.PROCESSING)
        .order_by("opened_at", "pk")
        .values_list("pk", "title", "description")[:size]
    )
    if not batch:
        return 0
    texts = [serving.ticket_text(title, description) for _, title, description in batch]
    suggestions, similar = suggest(texts)
    find_host = host_finder()
    finished = 0
    for (pk, _, _), text, suggestion, alike in zip(batch, texts, suggestions, similar, strict=True):
        host = find_host(text)
        try:
            with transaction.atomic():
                ticket = _lock_processing(pk)
                if ticket is None:
                    continue  # another worker has it, or it moved on
                events: list[PendingEvent] = []
                finish_triage(ticket, suggestion, alike, host, now, events)
                append_events(events)
                finished += 1
        except Exception as failed:
            # Never left `processing` for the sweeper to try again for ever: a person
            # has it, with why.
            logger.exception("triage of ticket %s failed", pk)
            _hand_to_people(pk, f"its triage failed ({failed}): a person decides")
            finished += 1
    if len(batch) == size:
        # At once in a worker; after the caller's commit when one wraps this.
        transaction.on_commit(enqueue_triage, robust=True)
    return finished


def _lock_processing(pk: int) -> Ticket | None:
    """The ticket `pk`, locked, if it is still `processing` and no other worker holds it."""
    waiting = Ticket.objects.filter(pk=pk, status=TicketStatus.PROCESSING)
    if connection.features.has_select_for_update_skip_locked:
        waiting = waiting.select_for_update(skip_locked=True, of=("self",))
    else:
        waiting = waiting.select_for_update()
    return waiting.select_related("host", "opened_by").first()


def suggest(
    texts: Sequence[str],
) -> tuple[list[TextTriage | None], list[list[SimilarIncident]]]:
    """The model's suggestion and the similar resolved incidents of each text: one call
    each for the whole batch. Without an approved triage model, none (still decided)."""
    try:
        return list(triage_texts(texts)), list(similar_incidents(texts, limit=SIMILAR_LIMIT))
    except Unavailable:
        return [None] * len(texts), [[] for _ in texts]


def host_finder() -> Any:
    """A function from a text to the one registered host it names (None: none or several).

    A host's name matches as a whole word, any case: "web-01" is not found in "web-012"
    nor in "web-01.example.com", but is at a sentence's end ("down on web-01.")."""
    names = {name.lower(): pk for pk, name in Host.objects.values_list("pk", "name")}
    if not names:
        return lambda text: None
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.-])({alternatives})(?![\w-]|\.\w)", re.IGNORECASE)

    def find(text: str) -> Host | None:
        found = {match.lower() for match in pattern.findall(text)}
        if len(found) != 1:
            return None
        return Host.objects.get(pk=names[found.pop()])

    return find


def triage_record(
    suggestion: TextTriage | None, alike: Sequence[SimilarIncident], host: Host | None
) -> dict[str, Any]:
    """What is kept of a triage on the ticket (Ticket.triage), read by the API and the story."""
    incidents = [
        {"ticket_id": s.ticket_id, "similarity": round(float(s.similarity), 4)} for s in alike
    ]
    inferred = host.name if host else None
    if suggestion is None:
        return {"model": NO_MODEL, "similar_incidents": incidents, "inferred_host": inferred}
    return {
        "model": f"v{suggestion.model_version}",
        "model_version_id": suggestion.model_version_id,
        "category": suggestion.category,
        "category_confidence": round(float(suggestion.category_confidence), 4),
        "runbook": suggestion.runbook,
        "runbook_confidence": round(float(suggestion.runbook_confidence), 4),
        "alternatives": [[name, round(float(p), 4)] for name, p in suggestion.alternatives],
        "unsure": bool(suggestion.unsure),
        "similar_incidents": incidents,
        "inferred_host": inferred,
    }


def finish_triage(
    ticket: Ticket,
    suggestion: TextTriage | None,
    alike: Sequence[SimilarIncident],
    inferred: Host | None,
    now: datetime,
    events: list[PendingEvent],
) -> Decision | None:
    """Record the triage of a locked `processing` ticket, fill what the caller left out
    (the host its text names, the category the model reads), then decide it, or hand it
    to a person to name what is missing. Returns its decision (None: it waits)."""
    caller_host = ticket.host
    host = caller_host
    if host is None and inferred is not None:
        host = inferred
    category = ticket.category or category_read(suggestion)
    busy: Ticket | None = None
    if host is not None and (host != caller_host or category != ticket.category):
        # The same rule as opening, under the host's lock as there: one open ticket per
        # host and category. What the triage filled in gives way to a ticket already open.
        Host.objects.select_for_update().get(pk=host.pk)
        busy = open_ticket_of(host, category, excluding=ticket)
        if busy is not None and host != caller_host:
            host = None
        elif busy is not None:
            category = ticket.category
    ticket.triage = triage_record(suggestion, alike, host if host != caller_host else None)
    ticket.triage["category_from"] = "caller" if ticket.category else "triage" if category else ""
    ticket.triaged_at = now
    ticket.host, ticket.category = host, category
    events.append(_triaged_event(ticket, suggestion, inferred, busy))
    missing = ""
    if host is None:
        missing = NO_HOST_REASON
    elif not category:
        missing = NO_CATEGORY_REASON
    if missing:
        if busy is not None:
            missing = f"{busy.host.name} has {busy.ticket_id} open in {busy.category}: {missing}"
        ticket.save(update_fields=["triage", "triaged_at", "host", "category"])
        events += escalate_ticket(ticket, missing)
        return None
    if ticket.status == TicketStatus.PROCESSING:
        ticket.status = TicketStatus.OPEN  # decided from here on, like any open ticket
    return _decide(ticket, now, events, also_saved=("triage", "triaged_at", "host", "category"))


def category_read(suggestion: TextTriage | None) -> str:
    """The category the model read in the text, "" when it has none or is unsure of it."""
    if suggestion is None or suggestion.category not in Category.values:
        return ""
    return suggestion.category


def _hand_to_people(ticket_pk: int, why: str) -> None:
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket_pk)
        append_events(escalate_ticket(ticket, why))


def _decide(
    ticket: Ticket, now: datetime, events: list[PendingEvent], also_saved: tuple[str, ...] = ()
) -> Decision:
    reading = confirming_reading(ticket.host, ticket.category, now)
    fields = ["status", *also_saved]
    if reading is not None:
        ticket.severity, ticket.confidence = reading.severity, reading.confidence
        fields += ["severity", "confidence"]
    ticket.save(update_fields=fields)
    opener = user_actor(ticket.opened_by) if ticket.opened_by_id else "system"
    return decide_reported_ticket(ticket, reading, reported_by=opener, now=now, events=events)


def _triaged_event(
    ticket: Ticket, suggestion: TextTriage | None, inferred: Host | None, busy: Ticket | None
) -> PendingEvent:
    if suggestion is None:
        said = "no triage model approved: no suggestion"
    elif suggestion.unsure or not suggestion.runbook:
        said = f"model v{suggestion.model_version} unsure: a person picks the runbook"
    else:
        said = (
            f"model v{suggestion.model_version} suggests {suggestion.runbook} "
            f"({suggestion.runbook_confidence:.0%})"
        )
    if ticket.host_id and not ticket.triage["inferred_host"]:
        where = f"on {ticket.host.name} (named by the caller)"
    elif ticket.host_id:
        where = f"on {ticket.host.name} (named in its text)"
    elif busy is not None and inferred is not None:
        where = f"names {inferred.name}, which has {busy.ticket_id} open in {busy.category}"
    else:
        where = "names no registered host"
    if ticket.triage["category_from"] == "triage":
        where += f"; category {ticket.category} read from its text"
    return event(
        "system",
        "ticket.triaged",
        ticket,
        f"{ticket.ticket_id} triaged: {said}; {where}",
        ticket_id=ticket.ticket_id,
        data=dict(ticket.triage),
    )


def name_host(
    ticket: Ticket,
    host_name: str,
    *,
    actor: Any,
    reason: str,
    now: datetime,
    category: str = "",
) -> Decision | None:
    """A person names the host (and the category, when the ticket has none) of a ticket
    waiting for them; the ticket is decided then. Needs remediation.change_ticket (as
    closing does) and a reason (audited `ticket.host_named`). Raises Invalid (no such
    host or category, a category missing), Conflict (another host or category is already
    named, it is not waiting, or the host has an open ticket in the category) or
    PermissionDenied."""
    require_permission(actor, permissions.CLOSE_TICKET, "name a ticket's host")
    note = require_reason(reason)
    who = user_actor(actor)
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(name=host_name).first()
        if host is None:
            raise Invalid(
                "unknown_host",
                f"No registered host is named {host_name!r} (manage.py add_host).",
                {"host": [f"No registered host is named {host_name!r}."]},
            )
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        _refuse_naming(ticket, host, category)
        category = ticket.category or category
        busy = open_ticket_of(host, category, excluding=ticket)
        if busy is not None:
            raise Conflict(
                "open_ticket_exists",
                f"{host.name} already has an open {category} ticket, {busy.ticket_id}: "
                "one problem, one ticket.",
                {"host": [f"{host.name} already has {busy.ticket_id} open."]},
            )
        named = {"host": host.name, "reason": note}
        if category != ticket.category:
            named["category"] = category
        ticket.host, ticket.category = host, category
        events: list[PendingEvent] = [
            event(
                who,
                "ticket.host_named",
                ticket,
                f"{ticket.ticket_id} is on {host.name}"
                + (f" ({category})" if "category" in named else "")
                + f", named by {who}: {note}",
                ticket_id=ticket.ticket_id,
                data=named,
            )
        ]
        ticket._history_user = actor
        ticket._change_reason = f"host named by {who}: {note}"
        if ticket.status == TicketStatus.PROCESSING:
            # Not triaged yet: the triage will decide it on this host.
            ticket.save(update_fields=["host", "category"])
            decision = None
        else:
            decision = _decide(ticket, now, events, also_saved=("host", "category"))
        append_events(events)
    return decision


def _refuse_naming(ticket: Ticket, host: Host, category: str) -> None:
    """What a person may not name on `ticket` (locked): raises, naming the field."""
    if ticket.status not in (TicketStatus.ESCALATED, TicketStatus.PROCESSING):
        raise Conflict("not_waiting", f"{ticket.ticket_id} is {ticket.status}: nothing to name.")
    if ticket.host_id is not None and ticket.host_id != host.pk:
        raise Conflict(
            "has_host",
            f"{ticket.ticket_id} is already on {ticket.host.name}.",
            {"host": [f"{ticket.ticket_id} is already on {ticket.host.name}."]},
        )
    if ticket.host_id is not None and ticket.category:
        raise Conflict("has_host", f"{ticket.ticket_id} is already on {ticket.host.name}.")
    if category and category not in Category.values:
        raise Invalid(
            "unknown_category",
            f"Unknown category {category!r}.",
            {"category": [f"Unknown category {category!r}."]},
        )
    if ticket.category and category and category != ticket.category:
        raise Invalid(
            "has_category",
            f"{ticket.ticket_id} is a {ticket.category} ticket.",
            {"category": [f"{ticket.ticket_id} is a {ticket.category} ticket already."]},
        )
    if not ticket.category and not category and ticket.status == TicketStatus.ESCALATED:
        raise Invalid(
            "category_required",
            f"{ticket.ticket_id} has no category: pick one with its host.",
            {"category": ["This ticket has no category yet: pick one."]},
        )


def requeue_lost_triage(now: datetime) -> int:
    """`processing` tickets older than WARDEN_TRIAGE_REQUEUE_SECONDS lost their task (a
    worker died, the queue was emptied): ask for the task again. Returns how many wait."""
    stale = now - timedelta(seconds=settings.WARDEN_TRIAGE_REQUEUE_SECONDS)
    waiting = Ticket.objects.filter(status=TicketStatus.PROCESSING, opened_at__lt=stale).count()
    if waiting:
        enqueue_triage()
    return waiting
