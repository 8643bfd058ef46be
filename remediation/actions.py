"""What people do to tickets, hosts, runbooks and executions: each action checks its
permission and reason and writes its event (docs/architecture.md).

Each is `(thing, *, actor, reason, now, **options)`. A save (of a ticket's facts, a host,
a runbook, an automation target) is dated by the history version it writes when it
commits: those take `now` for the one shape, and only a runbook's re-decisions use it.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from feedback import patterns
from governance.approvals.requests import void_request
from governance.audit import permissions
from governance.audit.changes import Change, record_change, require_permission, require_reason
from governance.audit.errors import Invalid
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.audit.tickets import move_ticket
from governance.decisions.facts import (
    DecidedCommand,
    decided_command,
    enabled_policy,
    policy_snapshot,
    runbook_facts,
    runbook_version,
)
from governance.models import Approval, ApprovalRequest, ApprovalStatus, Verdict
from governance.promotions.demotions import demote_after_failure
from governance.rules.checks import critical_traits, hard_limits
from governance.rules.facts import NO_POLICY_LIMITS
from remediation.choices import EXECUTION_ACTIVE_STATES, ExecutionState, TicketStatus
from remediation.executions import ExecutionError
from remediation.executions.ending import cancel_for_change, cancel_locked
from remediation.executions.queueing import queue_execution
from remediation.executions.rows import announce_after_commit, audit_event, locked_execution
from remediation.models import HOST_NAME, AutomationTarget, Execution, Host, Runbook, Ticket
from remediation.runbooks import void_decided_work


def roll_back_execution(
    execution: Execution, *, actor: Any, reason: str, now: datetime
) -> Execution:
    """A supervisor undoes a finished remediation, saying why: its rollback goes to the
    agent (or the automation system that ran it)."""
    require_permission(actor, permissions.SUPERVISE, "roll back executions")
    why = require_reason(reason)
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .get(pk=execution.pk)
        )
        runbook = execution.runbook
        if not (runbook.reversible and runbook.rollback_action):
            raise ExecutionError("irreversible", f"{runbook.name} has no rollback")
        if execution.state not in (ExecutionState.SUCCEEDED, ExecutionState.FAILED):
            raise ExecutionError(
                "not_finished",
                f"only a succeeded or failed execution can be rolled back, not {execution.state}",
            )
        was = execution.state
        execution.move_to(ExecutionState.ROLLBACK_PENDING, now)
        execution.save(update_fields=["state", "state_changed_at"])
        announce_after_commit(execution)
        events = [
            audit_event(
                execution,
                user_actor(actor),
                "execution.rollback_pending",
                f"rollback of {runbook.name} on {execution.host.name} requested: {why}",
            )
        ]
        if was == ExecutionState.SUCCEEDED:
            # A supervisor undoing a verified automatic fix is a verdict on the automation
            # (a failed one was counted when it failed).
            demote_after_failure(execution, now, events)
        append_events(events)
        return execution


def cancel_execution(execution: Execution, *, actor: Any, reason: str, now: datetime) -> Execution:
    """A person stops an unfinished execution, saying why; its ticket goes to people.

    Queued, held or dispatched: it never reaches the agent. Claimed: the agent is told
    not to start it. Running or rolling back: the agent may finish, and its late report
    is recorded but changes nothing.
    """
    require_permission(actor, permissions.SUPERVISE, "cancel executions")
    why = require_reason(reason)
    with transaction.atomic():
        execution = locked_execution(execution.pk)
        if execution is None or execution.state not in EXECUTION_ACTIVE_STATES:
            state = execution.state if execution else "gone"
            raise ExecutionError("finished", f"execution is {state}: nothing left to cancel")
        events: list[PendingEvent] = []
        cancel_locked(execution, now, events, user_actor(actor), why)
        append_events(events)
        return execution


# --- Tickets ---------------------------------------------------------------------------


def save_ticket(ticket: Ticket, *, actor: Any, reason: str, now: datetime) -> Change:
    """Save a person's edit of a ticket's facts (title, escalation facts, opt-in), audited
    with `reason`, required."""
    return record_change(ticket, actor=actor, reason=reason, summary_name=ticket.ticket_id)


def close_ticket(
    ticket: Ticket, *, actor: Any, reason: str, now: datetime, resolved: bool
) -> Ticket:
    """Close `ticket` as resolved (fixed by hand) or not, saying why (`reason`, required,
    kept as its resolution). What is still pending on it (its unfinished executions, its
    pending approval request) is cancelled, each audited with the closing note; the
    outcome counts on the ticket's learned pattern. Raises ExecutionError when it is
    closed already."""
    require_permission(actor, permissions.CLOSE_TICKET, "close tickets")
    note = require_reason(reason)
    who = user_actor(actor)
    with transaction.atomic():
        ticket = (
            Ticket.objects.select_for_update(of=("self",)).select_related("host").get(pk=ticket.pk)
        )
        if not ticket.is_open:
            raise ExecutionError("closed", f"{ticket.ticket_id} is already {ticket.status}")
        events: list[PendingEvent] = []
        by = actor.get_username() if actor else "system"
        cause = f"{ticket.ticket_id} closed by {by}: {note}"
        for request in (
            ApprovalRequest.objects.select_for_update(of=("self",))
            .select_related("runbook", "ticket")
            .filter(ticket=ticket, status=ApprovalStatus.PENDING)
        ):
            events.append(void_request(request, actor=who, reason=cause, now=now))
        cancelled = 0
        for execution in (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .filter(ticket=ticket, state__in=list(EXECUTION_ACTIVE_STATES))
        ):
            cancel_for_change(execution, now, events, cause, actor=who, escalate=False)
            cancelled += 1
        ticket.resolution = note
        how = "resolved by hand" if resolved else "closed unresolved"
        events.append(
            move_ticket(
                ticket,
                TicketStatus.RESOLVED if resolved else TicketStatus.CLOSED,
                actor=who,
                summary=f"{ticket.ticket_id} {how}: {note}",
                now=now,
                data={"cancelled_executions": cancelled},
                also_saved=("resolution",),
            )
        )
        patterns.record_outcome(ticket, resolved=resolved)
        append_events(events)
    return ticket


# A ticket waits for people in these: for an approval, or handed to them. A supervisor may
# decide it differently (override_with_runbook, or close_ticket by hand).
TICKET_WAITING_STATUSES = frozenset(
    {
        TicketStatus.AWAITING_APPROVAL,
        TicketStatus.ESCALATED,
        TicketStatus.PARTIALLY_REMEDIATED,
    }
)


def override_candidates(ticket: Ticket) -> QuerySet[Runbook]:
    """The runbooks that apply to `ticket`: enabled, of its category, not the one already
    waiting for approval, ordered by name."""
    waiting = ApprovalRequest.objects.filter(ticket=ticket, status=ApprovalStatus.PENDING).values(
        "runbook"
    )
    return (
        Runbook.objects.filter(enabled=True, category=ticket.category)
        .exclude(pk__in=waiting)
        .order_by("name")
    )


def runbook_refusals_for(ticket: Ticket, runbook: Runbook) -> list[str]:
    """Why `runbook` may not run by a supervisor's override for `ticket`, one line each: a
    critical runbook needs approvers, and what may not run even with approval (the policy's
    hard limits, the host's allow-list) is refused here rather than cancelled at dispatch."""
    command = decided_command(runbook, ticket)
    facts = runbook_facts(runbook, command)
    traits = critical_traits(facts)
    lines = [f"{runbook.name} {', '.join(traits)}: it needs approvers."] if traits else []
    policy = enabled_policy(ticket.category)
    return lines + hard_limits(facts, policy_snapshot(policy) if policy else NO_POLICY_LIMITS)


def override_choices(ticket: Ticket) -> list[tuple[Runbook, DecidedCommand]]:
    """The runbooks a supervisor may run instead for `ticket`, each with its exact command."""
    if ticket.host_id is None:
        return []
    return [
        (runbook, decided_command(runbook, ticket))
        for runbook in override_candidates(ticket)
        if not runbook_refusals_for(ticket, runbook)
    ]


def override_refusals(ticket: Ticket, runbook: Runbook) -> list[str]:
    """Why `runbook` cannot be run by override for `ticket` now, one line each."""
    if ticket.status not in TICKET_WAITING_STATUSES:
        return [f"{ticket.ticket_id} is {ticket.get_status_display().lower()}, not waiting."]
    if ticket.host_id is None:
        return [f"{ticket.ticket_id} names no registered host yet."]
    if not override_candidates(ticket).filter(pk=runbook.pk).exists():
        return [f"{runbook.name} is not an enabled runbook for {ticket.category}."]
    return runbook_refusals_for(ticket, runbook)


def override_with_runbook(
    ticket: Ticket, runbook: Runbook, *, actor: Any, reason: str, now: datetime
) -> Execution:
    """A supervisor decides a waiting ticket differently: `runbook` runs instead, saying why
    (`reason`, required). What waited for approval is voided; the supervisor's override is
    recorded as an approved request of its own (one approval: theirs), so the dispatch
    rules, the pauses and the claim treat it as approved work. Raises ExecutionError
    ("override_refused") naming why when it may not run."""
    require_permission(actor, permissions.SUPERVISE, "override tickets")
    why = require_reason(reason)
    who = user_actor(actor)
    with transaction.atomic():
        ticket = (
            Ticket.objects.select_for_update(of=("self",)).select_related("host").get(pk=ticket.pk)
        )
        runbook = Runbook.objects.get(pk=runbook.pk)
        refusals = override_refusals(ticket, runbook)
        if refusals:
            raise ExecutionError("override_refused", " ".join(refusals))
        cause = f"{ticket.ticket_id} overridden by {actor.get_username()}: {runbook.name} instead"
        events: list[PendingEvent] = [
            void_request(request, actor=who, reason=f"{cause}: {why}", now=now)
            for request in ApprovalRequest.objects.select_for_update(of=("self",))
            .select_related("runbook", "ticket")
            .filter(ticket=ticket, status=ApprovalStatus.PENDING)
        ]
        command = decided_command(runbook, ticket)
        request = ApprovalRequest.objects.create(
            ticket=ticket,
            runbook=runbook,
            runbook_version=runbook_version(runbook),
            argv_digest=command.digest,
            status=ApprovalStatus.APPROVED,
            required_approvals=1,
            requested_by=actor,
            created_at=now,
            decided_at=now,
            expires_at=now + timedelta(hours=settings.WARDEN_APPROVAL_TTL_HOURS),
        )
        Approval.objects.create(
            request=request, approver=actor, verdict=Verdict.APPROVE, comment=why, created_at=now
        )
        events.append(
            event(
                who,
                "ticket.overridden",
                request,
                f"{cause}: {why}",
                ticket_id=ticket.ticket_id,
                data={
                    "runbook": runbook.name,
                    "runbook_version": request.runbook_version,
                    "argv": command.argv,
                    "argv_digest": command.digest,
                    "reason": why,
                },
            )
        )
        execution = queue_execution(
            ticket=ticket,
            runbook=runbook,
            idempotency_key=f"override:{request.pk}",
            now=now,
            events=events,
            approval_request=request,
            requested_by=actor,
        )
        append_events(events)
    return execution


# --- Hosts -----------------------------------------------------------------------------


class HostError(Invalid):
    """A host that cannot be added, or given a new key, as asked."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


def add_host(
    name: str,
    *,
    actor: Any = None,
    reason: str = "",
    now: datetime,
    labels: dict[str, str] | None = None,
) -> tuple[Host, str]:
    """Register a host named `name`; returns it and its agent key, which is never stored
    and shown once. `manage.py add_host`, the demo and the benches call it as the system
    (actor None, no reason)."""
    if not HOST_NAME.match(name):
        raise HostError(f"{name!r} is not a valid host name (letters, digits, dots and dashes)")
    with transaction.atomic():
        if Host.objects.filter(name=name).exists():
            raise HostError(f"host {name} already exists (use --rotate-key for a new key)")
        host = Host(name=name, labels=labels or {})
        key = register_host(host, actor=actor, reason=reason, now=now)
    return host, key


def register_host(host: Host, *, actor: Any, reason: str, now: datetime) -> str:
    """Give a new, validated host its agent key, save it as added at `now` and audit it
    (with `reason`, if one was given); returns the key."""
    require_permission(actor, permissions.ADD_HOST, "add hosts")
    with transaction.atomic():
        key = host.set_new_api_key()
        host.created_at = now
        host._history_user = actor  # history names the person outside a request too
        host.save()
        append_events(
            [
                event(
                    user_actor(actor),
                    "host.added",
                    host,
                    f"host {host.name} added" + (f": {reason}" if reason else ""),
                    data={"labels": host.labels, "reason": reason},
                )
            ]
        )
    return key


def rotate_host_key(host: Host, *, actor: Any = None, reason: str = "", now: datetime) -> str:
    """Give `host` a new agent key and return it; the old one stops working at once.
    `manage.py add_host --rotate-key` and the demo call it as the system."""
    require_permission(actor, permissions.CHANGE_HOST, "rotate agent keys")
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        key = host.set_new_api_key()
        host.save()
        summary = f"agent key of {host.name} rotated" + (f": {reason}" if reason else "")
        data = {"reason": reason} if reason else None
        append_events([event(user_actor(actor), "host.key_rotated", host, summary, data=data)])
    return key


def save_host(host: Host, *, actor: Any, reason: str, now: datetime) -> Change:
    """Save a person's edit of a host (labels, enabled), as a new version, audited with
    `reason`, required."""
    return record_change(host, actor=actor, reason=reason)


# --- Runbooks and automation targets ---------------------------------------------------


def save_runbook(runbook: Runbook, *, actor: Any, reason: str, now: datetime) -> Change:
    """Validate and save `runbook` as a new version, audited with `reason`, required. An
    edit voids what was decided on the old text and decides those tickets again at `now`
    (remediation.runbooks.void_decided_work), in the edit's transaction."""
    return _save_voiding(runbook, f"runbook {runbook.name}", actor=actor, reason=reason, now=now)


def save_automation_target(
    target: AutomationTarget, *, actor: Any, reason: str, now: datetime
) -> Change:
    """Validate and save an automation target, audited. Where a runbook runs is part of what
    was approved: an edit voids and re-decides the work decided on each runbook it runs."""
    return _save_voiding(
        target, f"automation target {target.name}", actor=actor, reason=reason, now=now
    )


def _save_voiding(
    obj: Runbook | AutomationTarget, what: str, *, actor: Any, reason: str, now: datetime
) -> Change:
    with transaction.atomic():
        change = record_change(obj, actor=actor, reason=reason)
        if change.is_edit:
            cause = f"{what} changed ({', '.join(change.changed)}; version {change.version})"
            runbooks = [obj] if isinstance(obj, Runbook) else obj.runbooks.order_by("pk")
            for runbook in runbooks:
                append_events(void_decided_work(runbook, cause=cause, now=now))
    return change
