"""Executions, exactly once: queue, dispatch, agent claim, report, verify, roll back, sweep.

The Execution row is the truth and the django-q2 task only a wake-up call.
A row is created once per idempotency key and enqueued after commit; the
worker dispatches it under select_for_update after re-checking pauses and
approvals in the same transaction; the agent claims it with a lease and a new
fencing token and reports with that token (compare-and-set), so a stale or
duplicate report changes nothing. A scheduled sweeper re-enqueues rows whose
task vanished, and reconciles an expired lease by verifying the host's fresh
metrics, never by running the action again.
"""

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from feedback import patterns
from governance.audit import permissions
from governance.audit.changes import require_permission, require_reason
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.audit.tickets import escalate_ticket, move_ticket
from governance.decisions.deciding import (
    DecidedCommand,
    decided_command,
    dispatch_check,
    runbook_version,
)
from governance.models import ApprovalRequest, Decision
from governance.pauses.actions import active_pauses, pauses_applying
from governance.promotions.actions import demote_after_failure
from governance.promotions.reviews import open_review
from remediation import wakeups
from remediation.choices import (
    EXECUTION_ACTIVE_STATES,
    EXECUTION_AGENT_CLAIMABLE,
    ExecutionState,
    TicketStatus,
)
from remediation.models import Execution, Host, Runbook, Ticket
from scoring.samples import ClassifiedSample, sample_shows_problem
from warden_agent.argv import argv_digest

logger = logging.getLogger(__name__)


class ExecutionError(Exception):
    """A request about an execution that cannot be honoured; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AgentAction:
    """What an agent is told to run: the action (or its rollback) and the token to report with."""

    execution_id: int
    token: int
    kind: str  # "run" | "rollback"
    action: str
    argv: tuple[str, ...]  # exactly what to run: the agent runs it only if its allow-list allows
    argv_digest: str
    runbook: str
    ticket_id: str
    lease_expires_at: datetime
    lease_seconds: int  # the agent starts nothing once this much time has passed since it asked


def _audit(
    execution: Execution, actor: str, action: str, summary: str, **data: Any
) -> PendingEvent:
    return event(
        actor,
        action,
        execution,
        summary,
        ticket_id=execution.ticket.ticket_id,
        data={"state": execution.state, "runbook": execution.runbook.name, **data},
    )


def _announce_after_commit(execution: Execution) -> None:
    """The action is ready for whoever runs it, once this commits: the host's agent's long
    poll wakes, or the hand-off task takes it to its automation system."""
    if execution.handoff_target_id is not None:
        execution_id = execution.pk
        transaction.on_commit(
            lambda: async_task("remediation.tasks.hand_off_execution", execution_id),
            robust=True,  # the sweeper times out what was never handed off
        )
        return
    host_id = execution.host_id
    transaction.on_commit(lambda: wakeups.announce([host_id]), robust=True)


def _ended(execution: Execution, now: datetime, events: list[PendingEvent]) -> None:
    """An execution reached its end (the caller has moved it and audited the move).

    Work held for the blast radius or the rate limit may have room once this commits, so
    it is looked at then, not at the next sweep; and what Warden did by itself at L2 or L3
    gets its post-action review (governance.promotions.reviews)."""
    if Execution.objects.filter(state=ExecutionState.HELD, hold_until__isnull=False).exists():
        transaction.on_commit(
            lambda: async_task("remediation.tasks.release_held_executions"), robust=True
        )
    events += open_review(execution, now)


def _enqueue_after_commit(execution_id: int) -> None:
    def enqueue() -> None:
        Execution.objects.filter(pk=execution_id).update(enqueued_at=timezone.now())
        async_task("remediation.tasks.dispatch_execution", execution_id)

    # robust: a broker that is down must not turn the committed request into a 500; the
    # sweeper re-enqueues what was never delivered.
    transaction.on_commit(enqueue, robust=True)


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
        _audit(
            execution,
            actor,
            "execution.queued",
            f"{runbook.name} queued for {ticket.host.name} ({ticket.ticket_id})",
            idempotency_key=idempotency_key,
        )
    )
    _enqueue_after_commit(execution.pk)
    return execution


def dispatch_execution(execution_id: int, now: datetime) -> str:
    """The worker's step: hand a queued execution to its host's agent, or hold or cancel it.

    Runs once per delivery of the task; a second delivery finds the row no
    longer QUEUED and does nothing.
    """
    with transaction.atomic():
        execution = _locked_execution(execution_id)
        if execution is None or execution.state != ExecutionState.QUEUED:
            return "skipped"
        events: list[PendingEvent] = []
        if not _may_start(execution, now, events):
            append_events(events)
            return execution.state
        execution.move_to(ExecutionState.DISPATCHED, now)
        execution.dispatched_at = now
        execution.save(update_fields=["state", "state_changed_at", "dispatched_at"])
        _announce_after_commit(execution)
        runner = (
            f"automation system {execution.handoff_target.name}"
            if execution.handoff_target_id
            else f"{execution.host.name}'s agent"
        )
        events.append(
            _audit(
                execution,
                "system",
                "execution.dispatched",
                f"dispatched {execution.action} to {runner}",
            )
        )
        append_events(events)
        return execution.state


def _locked_execution(execution_id: int) -> Execution | None:
    return (
        Execution.objects.select_for_update(of=("self",))
        .select_related(
            "ticket", "host", "runbook", "approval_request", "decision", "handoff_target"
        )
        .filter(pk=execution_id)
        .first()
    )


def _may_start(execution: Execution, now: datetime, events: list[PendingEvent]) -> bool:
    """The whole dispatch check, under the execution's lock: a pause holds it, a rule that
    no longer allows it cancels it, a check that time can pass holds it until it passes or
    its deadline (each audited with every reason); True if it may start now."""
    pauses = pauses_applying(active_pauses(now), execution.host_id, execution.runbook.category)
    if pauses:
        execution.move_to(ExecutionState.HELD, now)
        execution.save(update_fields=["state", "state_changed_at"])
        events.append(
            _audit(execution, "system", "execution.held", f"held: {pauses[0].describe()}")
        )
        return False
    check = dispatch_check(execution, now)
    if check.refusals:
        _cancel(execution, now, events, "system", " ".join(check.refusals), refusals=check.refusals)
        return False
    if check.waits:
        _hold_until_checks_pass(execution, now, events, check.waits)
        return False
    return True


def _hold_until_checks_pass(
    execution: Execution, now: datetime, events: list[PendingEvent], waits: Sequence[str]
) -> None:
    """Hold an execution a passing check would let start, until its deadline: the earlier of
    WARDEN_HOLD_DEADLINE_SECONDS from its first hold and its approval's expiry. The sweeper
    releases it once the checks pass (release_held_executions), or cancels it at the deadline."""
    first_hold = execution.hold_until is None
    if first_hold:
        deadline = now + timedelta(seconds=settings.WARDEN_HOLD_DEADLINE_SECONDS)
        request = execution.approval_request
        if request is not None and request.expires_at < deadline:
            deadline = request.expires_at
        execution.hold_until = deadline
    execution.hold_reason = " ".join(waits)[:500]
    if execution.state != ExecutionState.HELD:
        execution.move_to(ExecutionState.HELD, now)
    execution.save(update_fields=["state", "state_changed_at", "hold_reason", "hold_until"])
    if first_hold:  # told once, not at every re-check
        until = timezone.localtime(execution.hold_until).strftime("%Y-%m-%d %H:%M %Z")
        events.append(
            _audit(
                execution,
                "system",
                "execution.waiting",
                f"held until its checks pass, at the latest {until}: {' '.join(waits)}",
                waits=list(waits),
                hold_until=execution.hold_until.isoformat(),
            )
        )


def _cancel(
    execution: Execution,
    now: datetime,
    events: list[PendingEvent],
    actor: str,
    reason: str,
    *,
    escalate: bool = True,
    ran: bool = True,
    **data: Any,
) -> None:
    """Cancel an unfinished execution and hand its ticket to people (caller holds the lock).

    `ran`: False when a running execution is known never to have started anywhere (its
    hand-off was refused), so it does not count as a failed fix."""
    was = execution.state
    execution.move_to(ExecutionState.CANCELLED, now)
    execution.finished_at = now
    execution.lease_expires_at = None
    execution.cancel_reason = reason[:500]
    execution.save(
        update_fields=[
            "state",
            "state_changed_at",
            "finished_at",
            "lease_expires_at",
            "cancel_reason",
        ]
    )
    events.append(
        _audit(execution, actor, "execution.cancelled", f"cancelled: {reason}", was=was, **data)
    )
    _ended(execution, now, events)
    if ran and was in (ExecutionState.RUNNING, ExecutionState.VERIFYING):
        _count_failed_attempt(execution, now, events)  # it ran, and nothing verified it worked
    if escalate:
        events += escalate_ticket(execution.ticket, f"execution cancelled ({was}): {reason}")


def claim_agent_actions(host: Host, now: datetime) -> list[AgentAction]:
    """The agent's step: take this host's next action or rollback, with a lease.

    One per poll, so nothing waits on the agent behind another action while its
    lease runs. A rollback goes first and proceeds under a pause (it restores a
    known state); a new action passes the whole dispatch check again here, in the
    claim's transaction: what was allowed when dispatched may not be any more.
    """
    with transaction.atomic():
        executions = list(
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host", "approval_request", "decision")
            .filter(
                host=host,
                state__in=list(EXECUTION_AGENT_CLAIMABLE),
                handoff_target__isnull=True,  # an automation system runs those
            )
            .order_by("created_at")
        )
        executions.sort(key=lambda e: e.state != ExecutionState.ROLLBACK_PENDING)
        events: list[PendingEvent] = []
        actions: list[AgentAction] = []
        for execution in executions:
            rollback = execution.state == ExecutionState.ROLLBACK_PENDING
            if not rollback and not _may_start(execution, now, events):
                continue
            actions.append(
                _claim(
                    execution,
                    f"agent:{host.name}",
                    settings.WARDEN_AGENT_LEASE_SECONDS,
                    now,
                    events,
                )
            )
            break
        append_events(events)
        return actions


def claim_handoff(execution_id: int, now: datetime) -> AgentAction | None:
    """The hand-off task's claim, as an agent's (remediation.handoff): a dispatched action or
    a pending rollback of an execution an automation system runs, with a lease of the
    system's length and a new token. None if there is nothing to claim (a second delivery
    of the task, a cancellation) or the dispatch check no longer allows it."""
    with transaction.atomic():
        execution = _locked_execution(execution_id)
        if (
            execution is None
            or execution.handoff_target_id is None
            or execution.state not in EXECUTION_AGENT_CLAIMABLE
        ):
            return None
        events: list[PendingEvent] = []
        rollback = execution.state == ExecutionState.ROLLBACK_PENDING
        if not rollback and not _may_start(execution, now, events):
            append_events(events)
            return None
        target = execution.handoff_target
        action = _claim(execution, f"handoff:{target.name}", target.lease_seconds, now, events)
        append_events(events)
        return action


def _claim(
    execution: Execution, actor: str, lease: int, now: datetime, events: list[PendingEvent]
) -> AgentAction:
    rollback = execution.state == ExecutionState.ROLLBACK_PENDING
    execution.move_to(EXECUTION_AGENT_CLAIMABLE[execution.state], now)
    execution.fencing_token += 1
    execution.lease_expires_at = now + timedelta(seconds=lease)
    if not rollback:
        execution.started_at = now
    execution.save(
        update_fields=[
            "state",
            "state_changed_at",
            "fencing_token",
            "lease_expires_at",
            "started_at",
        ]
    )
    runbook = execution.runbook
    if rollback:
        action = execution.rollback_action or runbook.rollback_action
        argv = list(execution.rollback_argv)
    else:
        action = execution.action or runbook.action
        argv = list(execution.argv)
    runner = actor.split(":", 1)[1]
    events.append(
        _audit(
            execution,
            actor,
            "execution.rollback_started" if rollback else "execution.started",
            f"{runner} started {action}"
            + (f" on {execution.host.name}" if runner != execution.host.name else ""),
            token=execution.fencing_token,
            agent_action=action,
            argv=argv,
            runbook_version=execution.runbook_version,
        )
    )
    return AgentAction(
        execution_id=execution.pk,
        token=execution.fencing_token,
        kind="rollback" if rollback else "run",
        action=action,
        argv=tuple(argv),
        argv_digest=argv_digest(argv) if argv else "",
        runbook=runbook.name,
        ticket_id=execution.ticket.ticket_id,
        lease_expires_at=execution.lease_expires_at,
        lease_seconds=lease,
    )


@dataclass(frozen=True)
class RunReport:
    """What a runner says happened. An agent names the argv it ran ([] if it ran nothing:
    it refused) and its exit code; an automation system runs a job, not an argv (None)."""

    ok: bool
    output: str
    argv: list[str] | None = None
    argv_digest: str = ""
    exit_code: int | None = None


def report_agent_result(
    host: Host, execution_id: int, report: RunReport, *, token: int, now: datetime
) -> Execution:
    """Record what the agent says happened; only the holder of the current token may say it,
    and only of the exact argv decided."""
    return _report(
        Execution.objects.filter(pk=execution_id, host=host, handoff_target__isnull=True),
        f"agent:{host.name}",
        f"execution {execution_id} is not this host's",
        report,
        token=token,
        now=now,
    )


def report_handoff_result(
    execution: Execution, *, token: int, ok: bool, output: str, now: datetime
) -> Execution:
    """Record what the automation system running `execution` says happened (its callback,
    whose signature the caller checked); compare-and-set on the token, as for an agent."""
    target = execution.handoff_target
    return _report(
        Execution.objects.filter(pk=execution.pk, handoff_target=target),
        f"handoff:{target.name}",
        f"execution {execution.pk} is not run by {target.name}",
        RunReport(ok=ok, output=output),
        token=token,
        now=now,
    )


def _report(
    executions: Any, actor: str, not_found: str, report: RunReport, *, token: int, now: datetime
) -> Execution:
    refused: ExecutionError | None = None
    ok, output = report.ok, report.output
    with transaction.atomic():
        execution = (
            executions.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .first()
        )
        if execution is None:
            raise ExecutionError("not_found", not_found)
        late = execution.state not in (ExecutionState.RUNNING, ExecutionState.ROLLING_BACK)
        if late and execution.fencing_token == token:
            # Cancelled, or its lease ran out, while the agent was still at it: what the
            # agent says happened on the host is kept and audited, never lost; the state
            # stays as the sweeper or the person left it.
            _record_late_report(execution, actor, ok=ok, output=output[:10_000])
        if late:
            refused = ExecutionError(
                "not_running", f"execution {execution.pk} is {execution.state}, not running"
            )
        elif execution.fencing_token != token:
            refused = ExecutionError(
                "stale_token",
                f"token {token} is stale: execution {execution.pk} is at {execution.fencing_token}",
            )
        else:
            refused = _refuse_another_command(execution, actor, report, now)
            if refused is None:
                _record_report(execution, actor, report, now=now)
    if refused is not None:
        raise refused
    return execution


def _expected_argv(execution: Execution) -> list[str]:
    return execution.argv if execution.state == ExecutionState.RUNNING else execution.rollback_argv


def _refuse_another_command(
    execution: Execution, actor: str, report: RunReport, now: datetime
) -> ExecutionError | None:
    """An agent that says it ran anything but the argv decided: the report is refused, and
    since something not decided may have run, the execution ends and people are told."""
    if report.argv is None:  # an automation system runs a job, not an argv
        return None
    if not report.argv and not report.ok:  # the agent refused it: nothing ran
        return None
    expected = _expected_argv(execution)
    if report.argv == expected and report.argv_digest == argv_digest(expected):
        return None
    ran = shlex.join(report.argv)
    why = (
        f"the agent reported running {ran!r}, not the decided {shlex.join(expected)!r}: "
        "report refused; a person must check the host"
    )
    events: list[PendingEvent] = []
    events.append(
        _audit(
            execution,
            actor,
            "execution.report_refused",
            why,
            reported_argv=report.argv,
            reported_digest=report.argv_digest,
            exit_code=report.exit_code,
            output=report.output[:10_000],
        )
    )
    if execution.state == ExecutionState.RUNNING:
        execution.output = f"[refused report: {ran}]\n{report.output}"[:10_000]
        execution.save(update_fields=["output"])
        _cancel(execution, now, events, "system", why)
    else:
        execution.rollback_output = f"[refused report: {ran}]\n{report.output}"[:10_000]
        _fail_rollback(execution, now, events, actor, why)
    append_events(events)
    return ExecutionError("argv_mismatch", why)


def record_handoff_delivery(
    execution_id: int, *, token: int, outcome: str, detail: str, reference: str, now: datetime
) -> str:
    """What became of the request that handed a claimed run or rollback to its automation
    system (remediation.handoff), under the claim's token (a later claim or a callback that
    already came are left alone). Returns the execution's state.

    outcome "sent": the system took it (its job id kept); "refused": it certainly did not
    start (no connection, or it answered 4xx), so the run is cancelled and a person told,
    or a rollback failed; "uncertain": it may have started (a timeout, a 5xx), so Warden
    waits for the callback and, past the lease, lets the host's metrics decide.
    """
    with transaction.atomic():
        execution = _locked_execution(execution_id)
        if execution is None:
            return "gone"
        current = execution.fencing_token == token and execution.state in (
            ExecutionState.RUNNING,
            ExecutionState.ROLLING_BACK,
        )
        target = execution.handoff_target
        actor = f"handoff:{target.name}" if target else "system"
        events: list[PendingEvent] = []
        if outcome == "sent":
            if reference and execution.fencing_token == token:
                execution.remote_reference = reference[:200]
                execution.save(update_fields=["remote_reference"])
            events.append(
                _audit(execution, actor, "execution.handed_off", detail, reference=reference)
            )
        elif outcome == "refused" and current:
            if execution.state == ExecutionState.RUNNING:
                # Nothing ran: not a failed fix, so no count against its automation.
                _cancel(execution, now, events, "system", f"hand-off refused: {detail}", ran=False)
            else:
                summary = f"rollback hand-off refused: {detail}; a person must check the host"
                _fail_rollback(execution, now, events, actor, summary)
        else:
            events.append(
                _audit(
                    execution,
                    actor,
                    "execution.handoff_uncertain",
                    f"hand-off may or may not have started: {detail}; waiting for the "
                    "callback, then the host's metrics",
                )
            )
        append_events(events)
        return execution.state


def _record_report(execution: Execution, actor: str, report: RunReport, *, now: datetime) -> None:
    """The runner's report of a run or rollback it holds the current lease for."""
    events: list[PendingEvent] = []
    host = execution.host
    ok, output = report.ok, report.output[:10_000]
    action = execution.action or execution.runbook.action
    ran = {"argv": report.argv, "exit_code": report.exit_code} if report.argv is not None else {}
    execution.lease_expires_at = None
    if execution.state == ExecutionState.RUNNING:
        execution.output = output
        execution.exit_code = report.exit_code
        if report.argv == [] and not ok:
            # The agent refused it (not on its allow-list, or not as decided): nothing ran,
            # so nothing to roll back and no failed fix to count. People decide.
            execution.save(update_fields=["output", "exit_code", "lease_expires_at"])
            why = f"the host's agent refused it: {output}"[:500]
            _cancel(execution, now, events, actor, why, ran=False)
            append_events(events)
            return
        if ok:
            execution.move_to(ExecutionState.VERIFYING, now)
            execution.verify_deadline = now + timedelta(
                seconds=settings.WARDEN_VERIFY_TIMEOUT_SECONDS
            )
            summary = f"{action} done; verifying with fresh metrics"
        else:
            execution.move_to(ExecutionState.FAILED, now)
            execution.finished_at = now
            summary = f"{action} failed on {host.name}"
        events.append(
            _audit(execution, actor, f"execution.{execution.state}", summary, output=output, **ran)
        )
        if not ok:
            _count_failed_attempt(execution, now, events)
            _start_rollback(execution, events, "the action failed")
    else:
        execution.rollback_output = output
        execution.rollback_exit_code = report.exit_code
        execution.move_to(ExecutionState.ROLLED_BACK if ok else ExecutionState.ROLLBACK_FAILED, now)
        execution.finished_at = now
        events.append(
            _audit(
                execution,
                actor,
                f"execution.{execution.state}",
                f"rollback {execution.rollback_action or execution.runbook.rollback_action} "
                + ("done" if ok else "failed")
                + f" on {host.name}",
                output=output,
                **ran,
            )
        )
        _ended(execution, now, events)
    execution.save()
    append_events(events)


def _record_late_report(execution: Execution, actor: str, *, ok: bool, output: str) -> None:
    """Keep a report that came after the execution stopped waiting for it, in its own
    transaction (the caller refuses the report afterwards)."""
    with transaction.atomic():
        field = (
            "rollback_output"
            if execution.rollback_output
            or (execution.state in (ExecutionState.ROLLED_BACK, ExecutionState.ROLLBACK_FAILED))
            else "output"
        )
        text = f"[late report, ok={ok}] {output}"
        setattr(execution, field, (getattr(execution, field) + "\n" + text).strip()[:10_000])
        execution.save(update_fields=[field])
        append_events(
            [
                _audit(
                    execution,
                    actor,
                    "execution.late_report",
                    f"{actor.split(':', 1)[1]} reported {'success' if ok else 'failure'} "
                    f"after the execution was {execution.state}",
                    ok=ok,
                    output=output,
                )
            ]
        )


def _start_rollback(execution: Execution, events: list[PendingEvent], why: str) -> None:
    """After a failure: dispatch the rollback if there is one, and hand the ticket to people."""
    runbook = execution.runbook
    if runbook.reversible and runbook.rollback_action:
        execution.move_to(ExecutionState.ROLLBACK_PENDING, execution.finished_at)
        _announce_after_commit(execution)
        events.append(
            _audit(
                execution,
                "system",
                "execution.rollback_pending",
                f"rolling back with {runbook.rollback_action}: {why}",
            )
        )
    events += escalate_ticket(execution.ticket, f"{runbook.name} failed: {why}")
    if execution.state == ExecutionState.FAILED:  # nothing to roll back: it ends failed
        _ended(execution, execution.finished_at, events)


def _fail_rollback(
    execution: Execution, now: datetime, events: list[PendingEvent], actor: str, summary: str
) -> None:
    """A rollback that cannot be known to have run: it ends failed, audited, and a person
    must check the host (the caller holds the lock)."""
    execution.move_to(ExecutionState.ROLLBACK_FAILED, now)
    execution.finished_at = now
    execution.lease_expires_at = None
    execution.save()
    events.append(_audit(execution, actor, "execution.rollback_failed", summary))
    events += escalate_ticket(execution.ticket, summary)
    _ended(execution, now, events)


def verify_with_samples(
    host: Host, samples: Sequence[ClassifiedSample], now: datetime, events: list[PendingEvent]
) -> None:
    """Fresh metrics decide verifying executions: healed -> succeeded, else failed and rolled back.

    Expects the caller's transaction (the metrics request).
    """
    executions = list(
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook")
        .filter(host=host, state=ExecutionState.VERIFYING)
    )
    for execution in executions:
        category = execution.runbook.category
        fresh = [
            s for s in samples if execution.started_at is None or s.taken_at >= execution.started_at
        ]
        for sample in sorted(fresh, key=lambda s: s.taken_at):
            execution.verify_samples_seen += 1
            if not sample_shows_problem(sample, category):
                _succeed(
                    execution,
                    now,
                    events,
                    f"verified: {execution.host.name} healthy for {category} "
                    f"after {execution.runbook.action}",
                    sample_id=sample.pk,
                )
                break
            if execution.verify_samples_seen >= settings.WARDEN_VERIFY_SAMPLES:
                _fail_verification(
                    execution,
                    now,
                    events,
                    f"{execution.verify_samples_seen} fresh samples still show it",
                )
                break
        execution.save()


def verify_with_resolved_alert(
    ticket: Ticket,
    ended_at: datetime,
    evidence: str,
    now: datetime,
    events: list[PendingEvent],
    **data: Any,
) -> int:
    """A monitoring system says the ticket's problem ended at `ended_at`: the ticket's
    executions waiting to be verified succeed on it, if it ended after they started.
    Returns how many. Expects the caller's transaction."""
    executions = list(
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook", "host")
        .filter(ticket=ticket, state=ExecutionState.VERIFYING, started_at__lte=ended_at)
    )
    for execution in executions:
        _succeed(execution, now, events, f"verified: {evidence}", **data)
        execution.save()
    return len(executions)


def _succeed(
    execution: Execution, now: datetime, events: list[PendingEvent], summary: str, **evidence: Any
) -> None:
    execution.move_to(ExecutionState.SUCCEEDED, now)
    execution.finished_at = now
    events.append(_audit(execution, "system", "execution.succeeded", summary, **evidence))
    ticket = execution.ticket
    ticket.resolution = f"{execution.runbook.title}: verified by fresh metrics."
    events.append(
        move_ticket(
            ticket,
            TicketStatus.RESOLVED,
            actor="system",
            summary=f"{ticket.ticket_id} resolved by {execution.runbook.name}",
            now=now,
            also_saved=("resolution",),
        )
    )
    if execution.approval_request_id is None:
        patterns.record_automatic_attempt(ticket, succeeded=True)
    patterns.record_outcome(ticket, resolved=True)
    _ended(execution, now, events)


def _fail_verification(
    execution: Execution, now: datetime, events: list[PendingEvent], why: str
) -> None:
    execution.move_to(ExecutionState.FAILED, now)
    execution.finished_at = now
    events.append(_audit(execution, "system", "execution.failed", f"verification failed: {why}"))
    _count_failed_attempt(execution, now, events)
    _start_rollback(execution, events, f"verification failed: {why}")


def _count_failed_attempt(execution: Execution, now: datetime, events: list[PendingEvent]) -> None:
    """A failed automatic fix counts against its pattern's automation, whatever happens next,
    and may cost its policy and pattern their autonomy at once (governance.promotions.actions)."""
    if execution.approval_request_id is None:
        patterns.record_automatic_attempt(execution.ticket, succeeded=False)
        demote_after_failure(execution, now, events)


def release_held_executions(now: datetime) -> int:
    """Put held executions back in the queue once nothing holds them: their pause has ended,
    and the checks they wait for would pass now. Returns how many."""
    with transaction.atomic():
        held = list(
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host", "approval_request", "decision")
            .filter(state=ExecutionState.HELD)
            .order_by("created_at")  # the longest waiting first, when room frees for one
        )
        pauses = list(active_pauses(now))
        events: list[PendingEvent] = []
        released = 0
        for execution in held:
            if pauses_applying(pauses, execution.host_id, execution.runbook.category):
                continue
            waiting = execution.hold_until is not None
            if waiting and dispatch_check(execution, now).waits:
                continue
            execution.move_to(ExecutionState.QUEUED, now)
            execution.save(update_fields=["state", "state_changed_at"])
            why = "its checks pass now" if waiting else "pause ended"
            events.append(_audit(execution, "system", "execution.released", f"{why}; queued"))
            _enqueue_after_commit(execution.pk)
            released += 1
        append_events(events)
        return released


def roll_back_execution(
    execution: Execution, *, user: Any, reason: str, now: datetime
) -> Execution:
    """A supervisor undoes a finished remediation: its rollback goes to the agent."""
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
        _announce_after_commit(execution)
        events = [
            _audit(
                execution,
                user_actor(user),
                "execution.rollback_pending",
                f"rollback of {runbook.name} on {execution.host.name} requested: {reason}",
            )
        ]
        if was == ExecutionState.SUCCEEDED:
            # A supervisor undoing a verified automatic fix is a verdict on the automation
            # (a failed one was counted when it failed).
            demote_after_failure(execution, now, events)
        append_events(events)
        return execution


def cancel_for_change(
    execution: Execution,
    now: datetime,
    events: list[PendingEvent],
    cause: str,
    *,
    actor: str = "system",
    escalate: bool = True,
) -> None:
    """Cancel a locked unfinished execution because what it relied on changed (`cause`)."""
    _cancel(execution, now, events, actor, cause, escalate=escalate)


def cancel_execution(execution: Execution, *, user: Any, reason: str, now: datetime) -> Execution:
    """A person stops an unfinished execution, saying why; its ticket goes to people.

    Queued, held or dispatched: it never reaches the agent. Running or rolling back:
    the agent may finish, and its late report is recorded but changes nothing.
    """
    require_permission(user, permissions.SUPERVISE, "cancel executions")
    why = require_reason(reason)
    with transaction.atomic():
        execution = _locked_execution(execution.pk)
        if execution is None or execution.state not in EXECUTION_ACTIVE_STATES:
            state = execution.state if execution else "gone"
            raise ExecutionError("finished", f"execution is {state}: nothing left to cancel")
        events: list[PendingEvent] = []
        _cancel(execution, now, events, user_actor(user), why)
        append_events(events)
        return execution


@dataclass(frozen=True)
class SweepReport:
    requeued: int = 0
    leases_expired: int = 0
    verifications_failed: int = 0
    released: int = 0
    timed_out: int = 0


def sweep(now: datetime) -> SweepReport:
    """Repair what crashes and lost tasks leave behind. Safe to run any number of times."""
    requeued = leases = verifications = 0
    stale_enqueue = now - timedelta(seconds=settings.WARDEN_REQUEUE_AFTER_SECONDS)
    lost = Execution.objects.filter(state=ExecutionState.QUEUED, enqueued_at__lt=stale_enqueue)
    never = Execution.objects.filter(
        state=ExecutionState.QUEUED, enqueued_at__isnull=True, created_at__lt=stale_enqueue
    )
    for execution_id in list(lost.values_list("pk", flat=True)) + list(
        never.values_list("pk", flat=True)
    ):
        Execution.objects.filter(pk=execution_id).update(enqueued_at=now)
        async_task("remediation.tasks.dispatch_execution", execution_id)
        requeued += 1
    with transaction.atomic():
        events: list[PendingEvent] = []
        for execution in (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .filter(
                state__in=[ExecutionState.RUNNING, ExecutionState.ROLLING_BACK],
                lease_expires_at__lt=now,
            )
        ):
            leases += 1
            if execution.state == ExecutionState.RUNNING:
                # The agent may or may not have acted: let the host's metrics say.
                execution.move_to(ExecutionState.VERIFYING, now)
                execution.verify_deadline = now + timedelta(
                    seconds=settings.WARDEN_VERIFY_TIMEOUT_SECONDS
                )
                summary = "agent lease expired; verifying the host's state instead of re-running"
            else:
                execution.move_to(ExecutionState.ROLLBACK_FAILED, now)
                execution.finished_at = now
                summary = "agent lease expired during rollback; a person must check the host"
            execution.lease_expires_at = None
            execution.save()
            events.append(_audit(execution, "system", f"execution.{execution.state}", summary))
            if execution.state == ExecutionState.ROLLBACK_FAILED:
                events += escalate_ticket(execution.ticket, summary)
                _ended(execution, now, events)
        for execution in (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .filter(state=ExecutionState.VERIFYING, verify_deadline__lt=now)
        ):
            verifications += 1
            _fail_verification(execution, now, events, "no healthy sample before the deadline")
            execution.save()
        timed_out = _time_out_waiting(now, events)
        append_events(events)
    released = release_held_executions(now)
    return SweepReport(requeued, leases, verifications, released, timed_out)


def _time_out_waiting(now: datetime, events: list[PendingEvent]) -> int:
    """Give up on executions waiting past their time for a worker, an agent or a pause."""
    dispatch = timedelta(seconds=settings.WARDEN_DISPATCH_TIMEOUT_SECONDS)
    held = timedelta(seconds=settings.WARDEN_HELD_TIMEOUT_SECONDS)
    limits = {
        ExecutionState.QUEUED: (dispatch, "no worker dispatched it"),
        ExecutionState.DISPATCHED: (dispatch, "the agent did not take it"),
        ExecutionState.ROLLBACK_PENDING: (dispatch, "the agent did not take the rollback"),
        ExecutionState.HELD: (held, "a pause held it"),  # a check's hold: its hold_until
    }
    count = 0
    for execution in (
        Execution.objects.select_for_update(of=("self",))
        .select_related("ticket", "runbook", "host")
        .filter(state=ExecutionState.HELD, hold_until__lt=now)
    ):
        count += 1
        _cancel(execution, now, events, "system", f"timed out waiting: {execution.hold_reason}")
    for state, (limit, what) in limits.items():
        for execution in (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host")
            .filter(state=state, state_changed_at__lt=now - limit)
        ):
            count += 1
            why = f"timed out: {what} within {int(limit.total_seconds())} s"
            if state == ExecutionState.ROLLBACK_PENDING:
                _fail_rollback(
                    execution, now, events, "system", f"{why}; a person must check the host"
                )
            else:
                _cancel(execution, now, events, "system", why)
    return count
