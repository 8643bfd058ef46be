"""Claims: whoever runs an execution takes it with a lease and a new fencing token, the
host's agent from its long poll, the hand-off task for an automation system. A new action
passes the whole dispatch check again in the claim's transaction (holds); a rollback goes
first and proceeds under a pause, since it restores a known state. The token is what the
runner reports with (reports)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from governance.audit.log import PendingEvent, append_events
from remediation.choices import EXECUTION_AGENT_CLAIMABLE, ExecutionState
from remediation.executions.holds import may_start
from remediation.executions.rows import audit_event, locked_execution
from remediation.models import Execution, Host
from warden_agent.argv import argv_digest


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
            if not rollback and not may_start(execution, now, events):
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
        execution = locked_execution(execution_id)
        if (
            execution is None
            or execution.handoff_target_id is None
            or execution.state not in EXECUTION_AGENT_CLAIMABLE
        ):
            return None
        events: list[PendingEvent] = []
        rollback = execution.state == ExecutionState.ROLLBACK_PENDING
        if not rollback and not may_start(execution, now, events):
            append_events(events)
            return None
        target = execution.handoff_target
        action = _claim(execution, f"handoff:{target.name}", target.lease_seconds, now, events)
        append_events(events)
        return action


def claim_token(execution: Execution, *, rollback: bool) -> int:
    """The fencing token of a claim: 2 * id - 1 for the run, 2 * id for its rollback.

    An execution is claimed at most twice, its run and then its rollback (a claim never
    returns it to a claimable state), so the tokens of all executions are distinct and
    one execution's rise. A report made with another execution's token, replayed or
    forged, is therefore stale here, and needs no table-wide counter to be so."""
    token = 2 * execution.pk - (0 if rollback else 1)
    if token <= execution.fencing_token:
        raise AssertionError(
            f"execution {execution.pk} is at token {execution.fencing_token}; "
            f"its {'rollback' if rollback else 'run'} would claim {token}"
        )
    return token


def _claim(
    execution: Execution, actor: str, lease: int, now: datetime, events: list[PendingEvent]
) -> AgentAction:
    rollback = execution.state == ExecutionState.ROLLBACK_PENDING
    execution.move_to(EXECUTION_AGENT_CLAIMABLE[execution.state], now)
    execution.fencing_token = claim_token(execution, rollback=rollback)
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
        audit_event(
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
