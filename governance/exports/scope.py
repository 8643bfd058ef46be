"""Reading is scoped like writing: who may read which part of the audit trail.

The people's roles (supervisors, approvers, compliance) read the whole trail
(governance.view_whole_auditevent). A role that may read only part of it (integrators,
with governance.view_auditevent alone) reads what it did itself and the whole story of
the tickets it opened, never another's token issues, access changes, pause reasons or
rejection notes. A ticket's opener is the actor of its `ticket.opened` event, the record
nobody can alter afterwards.
"""

from typing import Any

from django.db.models import Q, QuerySet

from governance.audit import permissions
from governance.audit.log import user_actor
from governance.models import AuditEvent


def reads_whole_trail(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(permissions.VIEW_WHOLE_AUDIT))


def tickets_opened_by(user: Any) -> QuerySet[AuditEvent]:
    """The ids of the tickets `user` opened (by session or with any of their tokens)."""
    return AuditEvent.objects.filter(action="ticket.opened", actor=user_actor(user)).values(
        "ticket_id"
    )


def readable_events(user: Any, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
    """`events` narrowed to what `user` may read (see the module's doc)."""
    if reads_whole_trail(user):
        return events
    actor = user_actor(user)
    return events.filter(Q(actor=actor) | Q(ticket_id__in=tickets_opened_by(user)))


def may_read_ticket_trail(user: Any, ticket_id: str) -> bool:
    """Whether `user` may read the whole story of one ticket (its evidence)."""
    return reads_whole_trail(user) or tickets_opened_by(user).filter(ticket_id=ticket_id).exists()
