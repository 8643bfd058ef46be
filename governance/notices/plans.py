"""Which audit events become notices, and writing them down after the change commits.

The audit log calls record_notices with each transaction's committed events
(governance.apps subscribes it): notice_plans picks what people must hear about, one
notice per ticket and transaction, of its most pressing kind, listing the events that say
why; the Notice rows are written and the sender (delivery.deliver_due) is woken when they
fall due (wake_sender). Acting at
L2 is told, acting at L3 is not: levels_acted_at reads the level each execution acted at.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from governance.choices import AutonomyLevel
from governance.models import AuditEvent, Notice, NoticeKind, Policy
from remediation.models import Execution, Ticket

# The django-q2 task that gathers and sends notices (governance.notices.delivery). Its
# dotted path is stored in Schedule rows (migration 0012, wake_at): keep it there.
DELIVER_TASK = "governance.notices.delivery.deliver_due"
WAKE_SCHEDULE = "warden-notices-wake"
# The notices of post-action reviews, by the level Warden acted at: one each at L2, a
# digest at L3.
REVIEW_KINDS = {
    AutonomyLevel.L2_CONDITIONAL: NoticeKind.L2_REVIEW,
    AutonomyLevel.L3_BOUNDED: NoticeKind.L3_REVIEW,
}
# Audit events that people are told of, and the kind of notice each makes.
TOLD = {
    "approval.requested": NoticeKind.APPROVAL_REQUESTED,
    "ticket.escalated": NoticeKind.ESCALATED,
    "execution.queued": NoticeKind.L2_ACTION,  # only automatic ones at L2 (notice_plans)
    "execution.failed": NoticeKind.ACTION_FAILED,  # or VERIFICATION_FAILED, by its summary
    "execution.rolled_back": NoticeKind.ROLLED_BACK,
    "execution.rollback_failed": NoticeKind.ROLLBACK_FAILED,
    "execution.waiting": NoticeKind.HELD,
    "policy.demoted": NoticeKind.AUTONOMY_LOWERED,
    "pattern.demoted": NoticeKind.AUTONOMY_LOWERED,
    "review.opened": REVIEW_KINDS[AutonomyLevel.L2_CONDITIONAL],  # or L3's, by its level
}
# Events that say why, listed in the notice of the same ticket and transaction.
EXPLAINING = frozenset(
    {
        "execution.rollback_pending",
        "execution.cancelled",
        "approval.voided",
        "approval.rejected",
        "approval.expired",
        "execution.succeeded",  # what the review of an automatic fix looks at
        "ticket.partially_remediated",  # told with the failure or rollback that caused it
    }
)
# When one transaction tells several things about a ticket, its notice is the first kind.
PRIORITY = (
    NoticeKind.APPROVAL_REQUESTED,
    NoticeKind.ROLLBACK_FAILED,
    NoticeKind.AUTONOMY_LOWERED,
    NoticeKind.VERIFICATION_FAILED,
    NoticeKind.ACTION_FAILED,
    NoticeKind.ROLLED_BACK,
    NoticeKind.L2_ACTION,
    NoticeKind.HELD,
    NoticeKind.ESCALATED,
    *REVIEW_KINDS.values(),
)


@dataclass(frozen=True)
class NoticePlan:
    """A notice to write: its kind, the ticket, and the events it tells of."""

    kind: str
    ticket_id: str
    sequence: int  # the first event it tells of (unique: the hook may run twice)
    lines: tuple[str, ...]
    approval_request_id: int | None = None
    execution_id: int | None = None


def automatic_executions(events: Iterable[AuditEvent]) -> set[int]:
    """Executions queued by a decision alone (no person approved them): L2 candidates."""
    return {
        int(row.object_id)
        for row in events
        if row.action == "execution.queued"
        and str(row.data.get("idempotency_key", "")).startswith("decision:")
    }


def kind_of(row: AuditEvent, acted_at_l2: frozenset[int] | set[int]) -> str | None:
    """The notice an event makes on its own, or None."""
    if row.action == "review.opened":
        return REVIEW_KINDS.get(row.data.get("autonomy_level"))
    kind = TOLD.get(row.action)
    if kind == NoticeKind.L2_ACTION and int(row.object_id) not in acted_at_l2:
        return None  # acting at L3 (or after an approval) tells nobody
    if kind == NoticeKind.ACTION_FAILED and row.summary.startswith("verification failed"):
        return NoticeKind.VERIFICATION_FAILED
    return kind


def notice_plans(
    events: Sequence[AuditEvent], acted_at_l2: frozenset[int] | set[int] = frozenset()
) -> list[NoticePlan]:
    """The notices one transaction's audit events make: one per ticket, of the most
    pressing kind, listing every event of that ticket that says what happened."""
    by_ticket: dict[str, list[tuple[AuditEvent, str | None]]] = {}
    for row in sorted(events, key=lambda row: row.sequence):
        if not row.ticket_id:
            continue
        kind = kind_of(row, acted_at_l2)
        if kind is not None or row.action in EXPLAINING:
            by_ticket.setdefault(row.ticket_id, []).append((row, kind))
    plans = []
    for ticket_id, told in by_ticket.items():
        kinds = [kind for _, kind in told if kind is not None]
        if not kinds:
            continue
        kind = min(kinds, key=PRIORITY.index)
        requests = [int(r.object_id) for r, _ in told if r.object_type == "ApprovalRequest"]
        executions = [int(r.object_id) for r, _ in told if r.object_type == "Execution"]
        plans.append(
            NoticePlan(
                kind=kind,
                ticket_id=ticket_id,
                sequence=told[0][0].sequence,
                lines=tuple(row.summary for row, _ in told),
                approval_request_id=requests[-1] if requests else None,
                execution_id=executions[-1] if executions else None,
            )
        )
    return plans


def acted_at_l2(execution_ids: Iterable[int]) -> set[int]:
    """Those of `execution_ids` queued by a decision under a policy at L2 when it decided
    (the level in the policy's version the decision recorded, else its level now)."""
    levels = levels_acted_at(execution_ids)
    return {pk for pk, level in levels.items() if level == AutonomyLevel.L2_CONDITIONAL}


def levels_acted_at(execution_ids: Iterable[int]) -> dict[int, int]:
    """The autonomy level each of `execution_ids` that a decision queued by itself (no
    approval) acted at: its policy's level in the version the decision recorded, else the
    policy's level now. Executions people approved are left out."""
    ids = list(execution_ids)
    if not ids:
        return {}
    rows = list(
        Execution.objects.filter(pk__in=ids, approval_request__isnull=True).values_list(
            "pk", "decision__policy_id", "decision__policy_version"
        )
    )
    versions = {version for _, _, version in rows if version}
    levels_then = dict(
        Policy.history.filter(history_id__in=versions).values_list("history_id", "autonomy_level")
    )
    policies = {policy for _, policy, _ in rows if policy}
    levels_now = dict(Policy.objects.filter(pk__in=policies).values_list("pk", "autonomy_level"))
    levels = {pk: levels_then.get(version, levels_now.get(policy)) for pk, policy, version in rows}
    return {pk: level for pk, level in levels.items() if level is not None}


def record_notices(rows: Sequence[AuditEvent]) -> int:
    """After a commit (governance.audit.log): write the notices its events make and wake the
    sender. Returns how many notices the events make (0 without a query for most)."""
    l2 = acted_at_l2(automatic_executions(rows)) if any(r.action in TOLD for r in rows) else set()
    plans = notice_plans(rows, l2)
    if not plans:
        return 0
    tickets = {
        t.ticket_id: t
        for t in Ticket.objects.select_related("host").filter(
            ticket_id__in={plan.ticket_id for plan in plans}
        )
    }
    now = timezone.now()
    Notice.objects.bulk_create(
        [
            Notice(
                kind=plan.kind,
                audit_sequence=plan.sequence,
                ticket=tickets.get(plan.ticket_id),
                approval_request_id=plan.approval_request_id,
                execution_id=plan.execution_id,
                host_name=tickets[plan.ticket_id].host_name if plan.ticket_id in tickets else "",
                summary="\n".join(plan.lines),
                created_at=now,
            )
            for plan in plans
        ],
        ignore_conflicts=True,  # the same events told again: already recorded
    )
    wake_sender(now)
    return len(plans)


def wake_sender(now: datetime) -> None:
    """Have the sender run when notices written at `now` fall due: at once when they wait
    for nothing, else at the end of their wait, through the one wake-up schedule
    (wake_at), so a storm's thousand commits ask for one run, not a thousand."""
    wait = timedelta(seconds=settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS)
    if wait:
        wake_at(now + wait)
        return
    # ack_failure=False: a failed send stays on the ORM broker, which delivers it again.
    async_task(DELIVER_TASK, ack_failure=False)


def wake_at(due: datetime) -> None:
    """Have django-q2's scheduler run deliver_due when a waiting group falls due (it looks
    every ~15 s); the warden-notices schedule is the every-minute backstop."""
    if not Schedule.objects.filter(name=WAKE_SCHEDULE, next_run__lte=due).exists():
        Schedule.objects.create(
            name=WAKE_SCHEDULE,
            func=DELIVER_TASK,
            schedule_type=Schedule.ONCE,
            repeats=-1,  # a ONCE schedule with negative repeats is deleted after it runs
            next_run=due,
        )
