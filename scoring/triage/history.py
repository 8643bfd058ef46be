"""What Warden's own tickets teach the triage model: their words, and what fixed them.

A resolved or closed ticket is labelled with the runbook that fixed it: the runbook a
person named in their current feedback's `actual_actions_taken` (a service's feedback is
left out) (by its name, as a text or as an
object's "action"), else the runbook of its last succeeded execution, else none (a
person resolved it some other way: "a person picks", the cautious label). The category
is the runbook's own when one is named (the model's labels pair each runbook with its
category), else the ticket's.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedback.models import Feedback
from remediation.choices import ExecutionState, TicketStatus
from remediation.models import Execution, Runbook, Ticket
from scoring.triage.corpus import CATALOGUE, incident_text
from scoring.triage.model import label_of

RESOLVED_STATUSES = (TicketStatus.RESOLVED, TicketStatus.CLOSED)
MAX_HISTORY_TICKETS = 5000


@dataclass(frozen=True)
class LabelledTicket:
    pk: int
    text: str
    category: str
    runbook: str
    # False: still open, what fixes it is not known yet.
    resolved: bool = True

    @property
    def label(self) -> str:
        return label_of(self.category, self.runbook)


def catalogue_risk() -> dict[str, str]:
    """runbook -> risk class: the database's catalogue over the corpus's copy."""
    risk = {name: action_type for name, (_, action_type) in CATALOGUE.items()}
    risk.update(dict(Runbook.objects.values_list("name", "action_type")))
    return risk


def runbook_categories() -> dict[str, str]:
    categories = {name: category for name, (category, _) in CATALOGUE.items()}
    categories.update(dict(Runbook.objects.values_list("name", "category")))
    return categories


def named_runbook(actions: Any, known: Iterable[str]) -> str:
    """The first runbook named in a feedback's actual_actions_taken, or ""."""
    known = set(known)
    for action in actions if isinstance(actions, list) else []:
        name = action.get("action") if isinstance(action, dict) else action
        if isinstance(name, str) and name.strip() in known:
            return name.strip()
    return ""


def fixing_runbooks(ticket_pks: list[int], known: Iterable[str]) -> dict[int, str]:
    """ticket pk -> the runbook that fixed it, people's word first (module docstring)."""
    fixed: dict[int, str] = {}
    for ticket_pk, name in (
        Execution.objects.filter(ticket_id__in=ticket_pks, state=ExecutionState.SUCCEEDED)
        .order_by("finished_at", "pk")
        .values_list("ticket_id", "runbook__name")
    ):
        fixed[ticket_pk] = name  # the last one wins
    # People's current verdicts only: a service's word, or one its author took back,
    # teaches the model nothing (what earns trust comes from people).
    for ticket_pk, actions in (
        Feedback.objects.filter(
            ticket_id__in=ticket_pks, from_service=False, superseded_at__isnull=True
        )
        .order_by("created_at", "pk")
        .values_list("ticket_id", "actual_actions_taken")
    ):
        named = named_runbook(actions, known)
        if named:
            fixed[ticket_pk] = named
    return fixed


def labelled_tickets(
    tickets: Iterable[Mapping[str, Any]], categories: Mapping[str, str]
) -> list[LabelledTicket]:
    rows = list(tickets)
    fixed = fixing_runbooks([row["pk"] for row in rows], categories)
    return [
        LabelledTicket(
            pk=row["pk"],
            text=incident_text(row["title"], row["description"]),
            category=categories.get(fixed.get(row["pk"], ""), row["category"]),
            runbook=fixed.get(row["pk"], ""),
        )
        for row in rows
    ]


def resolved_tickets_since(
    since: datetime, limit: int = MAX_HISTORY_TICKETS
) -> list[LabelledTicket]:
    """Resolved and closed tickets opened since `since`, newest first, labelled."""
    rows = (
        Ticket.objects.filter(status__in=RESOLVED_STATUSES, opened_at__gte=since)
        .order_by("-pk")
        .values("pk", "title", "description", "category")[:limit]
    )
    return labelled_tickets(rows, runbook_categories())


def recent_tickets(since: datetime, limit: int) -> list[LabelledTicket]:
    """Tickets opened since `since` whatever their state, newest first; a ticket's runbook is
    known ("" otherwise) once it is resolved or closed (the comparison's truth)."""
    rows = list(
        Ticket.objects.filter(opened_at__gte=since)
        .order_by("-pk")
        .values("pk", "title", "description", "category", "status")[:limit]
    )
    done = [row for row in rows if row["status"] in RESOLVED_STATUSES]
    known = {ticket.pk: ticket for ticket in labelled_tickets(done, runbook_categories())}
    return [
        known.get(row["pk"])
        or LabelledTicket(
            pk=row["pk"],
            text=incident_text(row["title"], row["description"]),
            category=row["category"],
            runbook="",
            resolved=False,
        )
        for row in rows
    ]
