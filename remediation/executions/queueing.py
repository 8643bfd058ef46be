"""Queueing and dispatch: an execution is created once per idempotency key, in the
caller's transaction, and enqueued after commit; the worker's dispatch hands it to its
host's agent or automation system once the dispatch check (holds) allows it. Each step
runs once however often its task is delivered."""

from datetime import datetime
from typing import Any

from django.db import transaction

from governance.audit.log import PendingEvent, append_events, user_actor
from governance.decisions.facts import DecidedCommand, decided_command, runbook_version
from governance.models import ApprovalRequest, Decision
from remediation.choices import ExecutionState, TicketStatus
from remediation.executions.holds import may_start
from remediation.executions.rows import (
    announce_after_commit,
    audit_event,
    enqueue_after_commit,
    locked_execution,
)
from remediation.models import Execution, Runbook, Ticket


def queue_execution(
    *,
    ticket: Ticket,
    runbook: Runbook,
    idempotency_key: str,
    now: datetime,
    events: list[PendingEvent],
    decision: Decision | None = None,
    approval_request: ApprovalRequest | None = None,
    requested_by: Any = None,
) -> Execution:
    """Create the execution for this key (once) and enqueue it after commit.

    Expects the caller's transaction and a locked ticket.
    """
    # What runs is what was decided (and shown to approvers), not the runbook's text
    # at claim time: the claim refuses an execution whose runbook has moved on.
    decided = decision if decision is not None and decision.runbook_id == runbook.pk else None
    if decided is not None:
        command = DecidedCommand(decided.argv, decided.rollback_argv)
    else:
        command = decided_command(runbook, ticket)
    execution, created = Execution.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "ticket": ticket,
            "host": ticket.host,
            "runbook": runbook,
            "runbook_version": decided.runbook_version if decided else runbook_version(runbook),
            "action": decided.action if decided and decided.action else runbook.action,
            "rollback_action": runbook.rollback_action,
            "argv": command.argv,
            "rollback_argv": command.rollback_argv,
            "argv_digest": command.digest,
            "state_changed_at": now,
            "decision": decision,
            "approval_request": approval_request,
            "requested_by": requested_by,
            "handoff_target_id": runbook.handoff_target_id,
            "created_at": now,
        },
    )
    if not created:
        return execution
    if ticket.status != TicketStatus.REMEDIATING:
        ticket.move_to(TicketStatus.REMEDIATING)
        ticket.save(update_fields=["status", "resolved_at"])
    actor = user_actor(requested_by) if requested_by else "system"
    events.append(
        audit_event(
            execution,
            actor,
            "execution.queued",
            f"{runbook.name} queued for {ticket.host.name} ({ticket.ticket_id})",
            idempotency_key=idempotency_key,
        )
    )
    enqueue_after_commit(execution.pk)
    return execution


def dispatch_execution(execution_id: int, now: datetime) -> str:
    """The worker's step: hand a queued execution to its host's agent, or hold or cancel it.

    Runs once per delivery of the task; a second delivery finds the row no
    longer QUEUED and does nothing.
    """
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution is None or execution.state != ExecutionState.QUEUED:
            return "skipped"
        events: list[PendingEvent] = []
        if not may_start(execution, now, events):
            append_events(events)
            return execution.state
        execution.move_to(ExecutionState.DISPATCHED, now)
        execution.dispatched_at = now
        execution.save(update_fields=["state", "state_changed_at", "dispatched_at"])
        announce_after_commit(execution)
        runner = (
            f"automation system {execution.handoff_target.name}"
            if execution.handoff_target_id
            else f"{execution.host.name}'s agent"
        )
        events.append(
            audit_event(
                execution,
                "system",
                "execution.dispatched",
                f"dispatched {execution.action} to {runner}",
            )
        )
        append_events(events)
        return execution.state
