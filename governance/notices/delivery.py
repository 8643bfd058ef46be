"""Notices: people are told what needs them, by email and by a Slack-compatible webhook.

Told: approval requests, escalations, actions taken at L2 (PHASE-65: it acts, a person is
notified), failed actions and verifications, rollbacks, a policy or pattern lowered
to L1 (governance.promotions.actions), and what Warden did by itself, to review
(governance.promotions.reviews: one notice each at L2, one digest at L3). Each notice carries what a
person needs to act: the host and its readings, the runbook with its risk and exact
commands, the decision's reasons, and for an approval signed approve and reject links.

Always after the change commits, never inside its transaction:

  governance.audit.log.append_events --on commit--> record_notices(rows)
    notice_plans: which events people must hear about, one notice per ticket and
    transaction (a failed verification's rollback and escalation are one notice)
    -> Notice rows, then the deliver_due task (django-q2)
  deliver_due(now)
    gather: a notice waits WARDEN_NOTICE_GROUP_WAIT_SECONDS for others of its kind; more
      hosts than WARDEN_NOTICE_DIGEST_THRESHOLD in a group go out as one digest, fewer as
      a message each (NoticeDelivery rows); L3's reviews wait
      WARDEN_REVIEW_DIGEST_MINUTES and always go out as one digest
    send: each unfinished delivery under a lease, marking each address and the webhook as
      it goes; a failure raises, so django-q2 retries, and a retry (or the warden-notices
      schedule, every minute) sends only what is left, after a back-off.

Links. An email's links are bound to its recipient (their user id is in the signed
payload) and work once. A Slack channel is shared, so its links carry no user: they
work once per person who follows them. Either way the page asks for a login first and
the verdict goes through governance.approvals.actions with that person's own permissions
(governance/notices/views.py), and a link expires after WARDEN_NOTICE_LINK_MAX_AGE_SECONDS
or with its request, whichever is sooner.
"""

import json
import logging
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from governance.audit import permissions
from governance.choices import AutonomyLevel
from governance.models import (
    ApprovalRequest,
    ApprovalStatus,
    AuditEvent,
    Decision,
    DeliveryStatus,
    Notice,
    NoticeDelivery,
    NoticeKind,
    NoticeLinkUse,
    Policy,
    Verdict,
)
from governance.rules.engine import RISK_BY_ACTION_TYPE
from governance.rules.labels import risk_label, severity_label
from remediation.choices import Category, ExecutionState
from remediation.models import Execution, Ticket
from scoring.models import MetricSample

logger = logging.getLogger("warden.notices")

# governance.approvals.actions' permission (importing it would make an import cycle through the
# audit log, which calls this module).
# Who hears of escalations, L2 actions, failures and rollbacks: the people who may stop or
# roll back an execution (supervisors).
# Who hears of actions to review: those who may review them (governance.promotions.reviews, which
# imports this module through the audit log).
# The notices of post-action reviews, by the level Warden acted at: one each at L2, a
# digest at L3.
REVIEW_KINDS = {
    AutonomyLevel.L2_CONDITIONAL: NoticeKind.L2_REVIEW,
    AutonomyLevel.L3_BOUNDED: NoticeKind.L3_REVIEW,
}
# Kinds always sent as one digest, after their own wait (gather_due).
ALWAYS_DIGEST = frozenset({REVIEW_KINDS[AutonomyLevel.L3_BOUNDED]})
DELIVER_TASK = "governance.notices.delivery.deliver_due"
WAKE_SCHEDULE = "warden-notices-wake"
LINK_SALT = "warden.notices.verdict-link"
SEND_LEASE = timedelta(seconds=120)  # longer than one delivery's mail and webhook timeouts
RETRY_BACKOFF = timedelta(seconds=30)  # times the attempts so far
WEBHOOK_TIMEOUT_SECONDS = 10
DIGEST_LISTED = 25  # items a digest lists; the rest by count
# Slack's limits: 3,000 characters a section, 50 blocks, 40,000 characters of text.
SLACK_SECTION_LIMIT = 2900
SLACK_TEXT_LIMIT = 39_000

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
READINGS = (
    ("disk_usage", "Disk", "{:.1f} %"),
    ("memory_usage", "Memory", "{:.1f} %"),
    ("cpu_usage", "CPU", "{:.1f} %"),
    ("dns_latency_ms", "DNS latency", "{:.0f} ms"),
)


class NoticeNotSent(Exception):
    """A delivery failed (mail server or webhook); raised so django-q2 retries the task."""


# --- Which events make notices (pure) -------------------------------------------------


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


# --- Recording, after commit ----------------------------------------------------------


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
                host_name=tickets[plan.ticket_id].host.name if plan.ticket_id in tickets else "",
                summary="\n".join(plan.lines),
                created_at=now,
            )
            for plan in plans
        ],
        ignore_conflicts=True,  # the same events told again: already recorded
    )
    # ack_failure=False: a failed send stays on the ORM broker, which delivers it again.
    async_task(DELIVER_TASK, ack_failure=False)
    return len(plans)


# --- Gathering into deliveries (pure planning) ----------------------------------------


@dataclass(frozen=True)
class Waiting:
    notice_id: int
    kind: str
    host: str
    created_at: datetime


@dataclass(frozen=True)
class Batch:
    """One message to send: a single notice, or a digest of a storm."""

    kind: str
    notice_ids: tuple[int, ...]
    digest: bool


def plan_batches(
    waiting: Sequence[Waiting],
    now: datetime,
    wait: timedelta,
    threshold: int,
    *,
    waits: Mapping[str, timedelta] | None = None,
    always_digest: frozenset[str] = frozenset(),
) -> tuple[list[Batch], datetime | None]:
    """Group waiting notices by kind. A kind's group goes out once its oldest notice has
    waited `wait` (or the kind's own in `waits`): as one digest if it spans more than
    `threshold` hosts or its kind is in `always_digest`, else a message each. Returns the
    batches due now and when the next group falls due (or None)."""
    by_kind: dict[str, list[Waiting]] = {}
    for notice in sorted(waiting, key=lambda n: (n.created_at, n.notice_id)):
        by_kind.setdefault(notice.kind, []).append(notice)
    batches: list[Batch] = []
    next_due: datetime | None = None
    for kind, group in by_kind.items():
        due = group[0].created_at + (waits or {}).get(kind, wait)
        if due > now:
            next_due = due if next_due is None else min(next_due, due)
            continue
        if kind in always_digest or len({notice.host for notice in group}) > threshold:
            batches.append(Batch(kind, tuple(n.notice_id for n in group), digest=True))
        else:
            batches += [Batch(kind, (n.notice_id,), digest=False) for n in group]
    return batches, next_due


def gather_due(now: datetime) -> datetime | None:
    """Turn the notices whose wait is over into deliveries; returns when the next group
    falls due. Locks the waiting notices, so two workers never gather one twice."""
    with transaction.atomic():
        waiting = [
            Waiting(n.pk, n.kind, n.host_name, n.created_at)
            for n in Notice.objects.select_for_update().filter(delivery__isnull=True)
        ]
        batches, next_due = plan_batches(
            waiting,
            now,
            timedelta(seconds=settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS),
            settings.WARDEN_NOTICE_DIGEST_THRESHOLD,
            waits={
                kind: timedelta(minutes=settings.WARDEN_REVIEW_DIGEST_MINUTES)
                for kind in ALWAYS_DIGEST
            },
            always_digest=ALWAYS_DIGEST,
        )
        for batch in batches:
            delivery = NoticeDelivery.objects.create(
                kind=batch.kind, digest=batch.digest, created_at=now
            )
            Notice.objects.filter(pk__in=batch.notice_ids, delivery__isnull=True).update(
                delivery=delivery
            )
    return next_due


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


# --- What a notice says ----------------------------------------------------------------


@dataclass(frozen=True)
class NoticeItem:
    """Everything one notice tells, read from the database when it is sent."""

    notice_id: int
    kind: str
    title: str
    host: str
    ticket_id: str
    ticket_title: str
    category: str
    severity: str
    what_happened: tuple[str, ...]
    readings: tuple[tuple[str, str], ...]
    readings_at: datetime | None
    latest_readings: tuple[tuple[str, str], ...] = ()  # when newer than `readings`
    latest_at: datetime | None = None
    runbook: str = ""
    runbook_title: str = ""
    action: str = ""
    commands: tuple[str, ...] = ()
    risk: str = ""
    rollback: str = ""
    blast_radius: str = ""
    reasons: tuple[str, ...] = ()
    approval_request_id: int | None = None
    pending: bool = False
    request_status: str = ""
    approvals_so_far: int = 0
    approvals_needed: int = 0
    expires_at: datetime | None = None
    time_left: str = ""
    execution_state: str = ""
    output: str = ""
    # ticket, evidence, request, execution, review
    links: dict[str, str] = field(default_factory=dict)


def absolute(path: str) -> str:
    return settings.WARDEN_NOTICE_BASE_URL + path


def time_left(expires_at: datetime, now: datetime) -> str:
    """'3 h 20 min' until `expires_at`, or 'expired'."""
    minutes = int((expires_at - now).total_seconds() // 60)
    if minutes <= 0:
        return "expired"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def readings_of(sample: MetricSample | None) -> tuple[tuple[str, str], ...]:
    """A sample's metrics as people read them: ('Disk', '97.0 %'), ..."""
    if sample is None:
        return ()
    rows = [(label, unit.format(getattr(sample, name))) for name, label, unit in READINGS]
    rows.append(("Firewall change", "requested" if sample.firewall_change_requested else "none"))
    return tuple(rows)


def notice_item(notice: Notice, now: datetime) -> NoticeItem | None:
    """What `notice` tells, as things stand at `now`; None if its ticket is gone."""
    if notice.ticket is None:
        return None
    item = describe(
        notice.ticket,
        kind=notice.kind,
        request=notice.approval_request,
        execution=notice.execution,
        lines=tuple(line for line in notice.summary.splitlines() if line),
        now=now,
        notice_id=notice.pk,
    )
    review = getattr(notice.execution, "review", None) if notice.execution else None
    if review is not None:  # what Warden did by itself: where to acknowledge or flag it
        item.links["review"] = absolute(
            reverse("admin:feedback_postactionreview_change", args=[review.pk])
        )
    return item


def describe(
    ticket: Ticket,
    *,
    kind: str,
    now: datetime,
    request: ApprovalRequest | None = None,
    execution: Execution | None = None,
    lines: tuple[str, ...] = (),
    notice_id: int = 0,
) -> NoticeItem:
    """What people need to act on `ticket` (and its approval request or execution) at
    `now`: the notices and the confirmation page both show this."""
    decision: Decision | None
    if request is not None and request.decision_id:
        decision = request.decision
    elif execution is not None and execution.decision_id:
        decision = execution.decision
    else:
        decision = ticket.decisions.select_related("runbook").order_by("-created_at").first()
    latest = MetricSample.objects.filter(host_id=ticket.host_id).order_by("-taken_at").first()
    # An approval binds to the readings its decision was made on: those are shown first.
    sample = decision.sample if request is not None and decision is not None else None
    sample = sample or latest
    runbook = (
        (request.runbook if request else None)
        or (execution.runbook if execution else None)
        or (decision.runbook if decision else None)
    )
    links = {
        "ticket": absolute(reverse("admin:remediation_ticket_change", args=[ticket.pk])),
        "evidence": absolute(reverse("ticket-evidence-page", args=[ticket.ticket_id])),
    }
    values: dict[str, Any] = {}
    if latest is not None and sample is not None and latest.pk != sample.pk:
        values |= {"latest_readings": readings_of(latest), "latest_at": latest.taken_at}
    if runbook is not None:
        decided = decision if decision is not None and decision.runbook_id == runbook.pk else None
        if execution is not None:
            commands, action = execution.commands, execution.action
        elif decided is not None:
            commands, action = decided.commands, decided.action
        else:
            commands, action = runbook.commands, runbook.action
        risk = decided.risk_level if decided is not None else ""
        values |= {
            "runbook": runbook.name,
            "runbook_title": runbook.title,
            "action": action or runbook.action,
            "commands": tuple(commands or ()),
            "risk": risk_label(risk or RISK_BY_ACTION_TYPE.get(runbook.action_type, "")),
            "rollback": (
                f"{runbook.rollback_action} (reversible)"
                if runbook.reversible and runbook.rollback_action
                else "none: it cannot be undone"
            ),
            "blast_radius": runbook.blast_radius,
        }
    if request is not None:
        links["request"] = absolute(
            reverse("admin:governance_approvalrequest_change", args=[request.pk])
        )
        values |= {
            "approval_request_id": request.pk,
            "pending": request.status == ApprovalStatus.PENDING and request.expires_at > now,
            "request_status": request.get_status_display(),
            "approvals_so_far": request.approvals.filter(verdict=Verdict.APPROVE).count(),
            "approvals_needed": request.required_approvals,
            "expires_at": request.expires_at,
            "time_left": time_left(request.expires_at, now),
        }
    if execution is not None:
        links["execution"] = absolute(
            reverse("admin:remediation_execution_change", args=[execution.pk])
        )
        values |= {
            "execution_state": ExecutionState(execution.state).label,
            "output": (execution.rollback_output or execution.output)[-500:],
        }
    return NoticeItem(
        notice_id=notice_id,
        kind=kind,
        title=NoticeKind(kind).label,
        host=ticket.host.name,
        ticket_id=ticket.ticket_id,
        ticket_title=ticket.title,
        category=Category(ticket.category).label,
        severity=severity_label(ticket.severity),
        what_happened=lines,
        readings=readings_of(sample),
        readings_at=sample.taken_at if sample else None,
        reasons=tuple(decision.reasons) if decision else (),
        links=links,
        **values,
    )


# --- Who is told -----------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    address: str
    user_id: int | None  # None: an address from WARDEN_NOTICE_EMAILS (no personal links)
    name: str


def people_with(permission: str) -> list[Any]:
    """Active users with an email who hold `permission` (directly, by a role, or as
    superusers)."""
    app_label, codename = permission.split(".", 1)
    granted = Q(is_superuser=True)
    for via in ("user_permissions", "groups__permissions"):
        granted |= Q(**{f"{via}__codename": codename, f"{via}__content_type__app_label": app_label})
    users = get_user_model().objects.filter(granted, is_active=True).exclude(email="")
    return list(users.distinct().order_by("pk"))


def approvers_of(request: ApprovalRequest, candidates: Sequence[Any]) -> list[Any]:
    """Who of `candidates` may approve `request` (governance.approvals.actions.check_can_decide's
    rules that depend on the person: not their own request, named by the policy if it
    names approvers)."""
    policy = request.decision.policy if request.decision_id and request.decision.policy else None
    named = set(policy.approvers) if policy is not None else set()
    return [
        user
        for user in candidates
        if user.pk != request.requested_by_id
        and (not named or user.get_username() in named or user.email in named)
    ]


def recipients_of(
    kind: str, items: Sequence[NoticeItem], requests: dict[int, ApprovalRequest]
) -> list[tuple[Recipient, list[NoticeItem]]]:
    """Each recipient with the items they are told of: approvers with the requests they
    may decide, supervisors with everything else, and WARDEN_NOTICE_EMAILS with all."""
    told: dict[str, tuple[Recipient, list[NoticeItem]]] = {}
    if kind == NoticeKind.APPROVAL_REQUESTED:
        approvers = people_with(permissions.APPROVE)
        for item in items:
            request = requests.get(item.approval_request_id or 0)
            for user in approvers_of(request, approvers) if request else []:
                person = Recipient(user.email, user.pk, user.get_username())
                told.setdefault(user.email, (person, []))[1].append(item)
    else:
        who = permissions.REVIEW if kind in REVIEW_KINDS.values() else permissions.SUPERVISE
        for user in people_with(who):
            told[user.email] = (Recipient(user.email, user.pk, user.get_username()), list(items))
    for address in settings.WARDEN_NOTICE_EMAILS:
        told.setdefault(address, (Recipient(address, None, address), list(items)))
    return list(told.values())


# --- Links -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictLink:
    """What an approve or reject link says: the request, the verdict, for whom (None:
    anyone who may approve, once each), and its nonce."""

    request_id: int
    verdict: str
    user_id: int | None
    nonce: str


class LinkRefused(Exception):
    """A link that does nothing; `message` says why, `status` is the page's HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def sign_link(request_id: int, verdict: str, user_id: int | None) -> str:
    """A signed, timestamped token for one verdict link (django.core.signing's
    TimestampSigner); a fresh nonce makes every link single-use on its own."""
    payload = {"r": request_id, "v": verdict, "u": user_id, "n": secrets.token_hex(16)}
    return signing.dumps(payload, salt=LINK_SALT, compress=True)


def link_url(request_id: int, verdict: str, user_id: int | None) -> str:
    return absolute(reverse("notice-verdict", args=[sign_link(request_id, verdict, user_id)]))


def read_link(token: str) -> VerdictLink:
    """The link `token` stands for; raises LinkRefused if it is altered or expired."""
    max_age = settings.WARDEN_NOTICE_LINK_MAX_AGE_SECONDS
    try:
        payload = signing.loads(token, salt=LINK_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise LinkRefused(
            "expired",
            f"This link has expired: a notice's links work for {max_age // 60} minutes. "
            "Nothing was changed; open the request in the admin or the console to decide.",
            410,
        ) from None
    except signing.BadSignature:
        raise LinkRefused(
            "bad_signature",
            "This link is not one Warden signed, or it was altered on the way (a character "
            "changed or cut off). Nothing was changed.",
            400,
        ) from None
    try:
        link = VerdictLink(int(payload["r"]), str(payload["v"]), payload["u"], str(payload["n"]))
    except (KeyError, TypeError, ValueError):
        raise LinkRefused("bad_signature", "This link is not a verdict link.", 400) from None
    if link.verdict not in Verdict.values:
        raise LinkRefused("bad_signature", "This link names no verdict.", 400)
    return link


def check_link_for(link: VerdictLink, user: Any) -> None:
    """Raise LinkRefused unless `user` may still use `link`: sent to them (or to a shared
    channel), and not used by them before."""
    if link.user_id is not None and link.user_id != user.pk:
        raise LinkRefused(
            "other_user",
            "This link was sent to another person: a link in an email works only for the "
            "person it was sent to. Nothing was changed; use the link in your own notice, "
            "or the admin.",
            403,
        )
    used = NoticeLinkUse.objects.filter(nonce=link.nonce, user=user).first()
    if used is not None:
        when = timezone.localtime(used.used_at)
        raise LinkRefused(
            "used",
            f"This link was already used, at {when:%Y-%m-%d %H:%M:%S %Z} "
            f"({used.outcome or used.get_verdict_display()}). Each link works once; nothing "
            "was changed.",
            410,
        )


# --- Messages (pure) -------------------------------------------------------------------


def subject_of(kind: str, items: Sequence[NoticeItem], digest: bool) -> str:
    label = NoticeKind(kind).label
    if not digest and len(items) == 1:
        item = items[0]
        what = f"{item.runbook} on {item.host}" if item.runbook else item.host
        return f"[Warden] {label}: {what} ({item.ticket_id})"
    hosts = sorted({item.host for item in items})
    named = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
    return f"[Warden] {label} on {len(hosts)} host{'s' if len(hosts) > 1 else ''}: {named}"


def slack_message(
    kind: str, items: Sequence[NoticeItem], digest: bool, links: dict[int, dict[str, str]]
) -> dict[str, Any]:
    """An incoming-webhook payload: `text` for any Slack-compatible receiver, `blocks` for
    Slack. `links` maps a notice to its approve and reject URLs (shared-channel links)."""
    title = subject_of(kind, items, digest).removeprefix("[Warden] ")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}}
    ]
    text_lines = [title]
    listed = items[:DIGEST_LISTED] if digest else items
    for item in listed:
        parts = [f"*{item.host}* · <{item.links['ticket']}|{item.ticket_id}> {item.ticket_title}"]
        if digest:  # a line each: what happened first, the rest behind the links
            parts[0] += f" · {item.what_happened[0]}" if item.what_happened else ""
        else:
            parts += [f"• {line}" for line in item.what_happened]
        if item.readings and not digest:
            parts.append("Readings: " + ", ".join(f"{k} {v}" for k, v in item.readings))
        if item.runbook:
            parts.append(f"Runbook *{item.runbook}* (risk *{item.risk}*): `{item.action}`")
            if not digest:
                parts += [f"`{command}`" for command in item.commands]
        if item.approval_request_id:
            left = f" · {item.time_left} left" if item.pending else ""
            parts.append(
                f"Approvals {item.approvals_so_far} of {item.approvals_needed} · "
                f"{item.request_status}{left}"
            )
        if item.reasons and not digest:
            parts += [f"> {reason}" for reason in item.reasons]
        if "review" in item.links:
            parts.append(f"<{item.links['review']}|Review it…> (acknowledge or flag)")
        verdicts = links.get(item.notice_id, {})
        if verdicts:
            parts.append(
                f"<{verdicts['approve']}|Approve…> · <{verdicts['reject']}|Reject…> "
                "(a confirmation page, after login)"
            )
        section = "\n".join(parts)[:SLACK_SECTION_LIMIT]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": section}})
        text_lines.append(section)
    if len(items) > len(listed):
        more = f"…and {len(items) - len(listed)} more in Warden."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        text_lines.append(more)
    return {"text": "\n\n".join(text_lines)[:SLACK_TEXT_LIMIT], "blocks": blocks[:50]}


def email_for(
    recipient: Recipient, kind: str, items: Sequence[NoticeItem], digest: bool, now: datetime
) -> EmailMultiAlternatives:
    """One person's message: their items, with approve and reject links of their own on
    each pending approval (none for an address that is not a user)."""
    entries = []
    for item in items:
        verdicts = {}
        if item.pending and recipient.user_id is not None:
            verdicts = {
                verdict: link_url(item.approval_request_id, verdict, recipient.user_id)
                for verdict in Verdict.values
            }
        entries.append({"item": item, "links": verdicts})
    context = {
        "subject": subject_of(kind, items, digest),
        "kind": NoticeKind(kind).label,
        "digest": digest,
        "review": kind in REVIEW_KINDS.values(),  # what Warden did by itself, to review
        "entries": entries,
        "recipient": recipient,
        "now": now,
        "max_age_minutes": settings.WARDEN_NOTICE_LINK_MAX_AGE_SECONDS // 60,
        "warden_url": absolute("/admin/"),
    }
    message = EmailMultiAlternatives(
        subject=context["subject"],
        body=render_to_string("notices/email.txt", context),
        to=[recipient.address],
    )
    message.attach_alternative(render_to_string("notices/email.html", context), "text/html")
    return message


# --- Sending ---------------------------------------------------------------------------


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST `payload` as JSON; raises NoticeNotSent unless the receiver answers 2xx."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        raise NoticeNotSent(f"the webhook answered HTTP {error.code}") from error
    except (urllib.error.URLError, OSError) as error:
        raise NoticeNotSent(f"the webhook could not be reached: {error}") from error
    if not 200 <= status < 300:
        raise NoticeNotSent(f"the webhook answered HTTP {status}")


def send_delivery(delivery: NoticeDelivery, now: datetime) -> list[str]:
    """Send what is left of one claimed delivery, marking each address and the webhook as
    soon as it is sent. Returns what failed (empty when it is all sent)."""
    notices = list(
        delivery.notices.select_related(
            "ticket__host",
            "approval_request__runbook",
            "approval_request__decision__policy",
            "approval_request__decision__sample",
            "execution__runbook",
            "execution__decision",
            "execution__review",
        )
    )
    items = [item for item in (notice_item(n, now) for n in notices) if item is not None]
    if delivery.kind == NoticeKind.APPROVAL_REQUESTED:
        items = [item for item in items if item.pending]  # decided meanwhile: nothing to ask
    if not items:
        return []
    requests = {n.approval_request_id: n.approval_request for n in notices if n.approval_request}
    problems = []
    emailed = list(delivery.emailed)
    left = [
        (person, told)
        for person, told in recipients_of(delivery.kind, items, requests)
        if person.address not in emailed
    ]
    if left:
        try:
            with get_connection() as connection:
                for person, told in left:
                    email = email_for(person, delivery.kind, told, delivery.digest, now)
                    connection.send_messages([email])
                    emailed.append(person.address)
                    NoticeDelivery.objects.filter(pk=delivery.pk).update(emailed=emailed)
        except Exception as error:  # a mail server down or refusing: retried later
            problems.append(f"email: {error}"[:200])
    url = settings.WARDEN_SLACK_WEBHOOK_URL
    if url and delivery.posted_at is None:
        shared = {
            item.notice_id: {
                verdict: link_url(item.approval_request_id, verdict, None)
                for verdict in Verdict.values
            }
            for item in items
            if item.pending
        }
        try:
            post_webhook(url, slack_message(delivery.kind, items, delivery.digest, shared))
            NoticeDelivery.objects.filter(pk=delivery.pk).update(posted_at=now)
        except NoticeNotSent as error:
            problems.append(f"webhook: {error}"[:200])
    return problems


def send_unfinished(now: datetime) -> list[str]:
    """Send every unfinished delivery no other worker holds and none waits to retry;
    returns what failed this time."""
    problems = []
    for pk in NoticeDelivery.objects.filter(status=DeliveryStatus.PENDING).values_list(
        "pk", flat=True
    ):
        claimed = (
            NoticeDelivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .update(lease_until=now + SEND_LEASE, attempts=F("attempts") + 1)
        )
        if not claimed:
            continue
        delivery = NoticeDelivery.objects.get(pk=pk)
        failed = send_delivery(delivery, now)
        if not failed:
            NoticeDelivery.objects.filter(pk=pk).update(
                status=DeliveryStatus.SENT, finished_at=now, lease_until=None, last_error=""
            )
            continue
        error = "; ".join(failed)[:500]
        if delivery.attempts >= settings.WARDEN_NOTICE_MAX_ATTEMPTS:
            logger.error(
                "notice delivery %s given up after %s attempts: %s", pk, delivery.attempts, error
            )
            NoticeDelivery.objects.filter(pk=pk).update(
                status=DeliveryStatus.FAILED, finished_at=now, lease_until=None, last_error=error
            )
        else:
            # The lease doubles as the back-off: nobody retries it before then.
            NoticeDelivery.objects.filter(pk=pk).update(
                lease_until=now + RETRY_BACKOFF * delivery.attempts, last_error=error
            )
        problems.append(f"delivery {pk}: {error}")
    return problems


def deliver_due(now: datetime | None = None) -> str:
    """The django-q2 task: gather the notices whose wait is over, send what is unfinished,
    and wake again when the next group falls due. Raises NoticeNotSent if anything failed,
    so django-q2 retries; sending twice is prevented by what each delivery has marked."""
    now = now or timezone.now()
    next_due = gather_due(now)
    problems = send_unfinished(now)
    if next_due is not None:
        wake_at(next_due)
    if problems:
        raise NoticeNotSent("; ".join(problems))
    return "sent"
