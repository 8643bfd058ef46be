"""Claims and starts: whoever runs an execution takes it with a new fencing token, the host's
agent from its long poll, the hand-off task for an automation system. A new action passes
the whole dispatch check again in the claim's transaction (holds); a rollback goes first
and proceeds under a pause, since it restores a known state. The token is what the runner
reports with (reports).

An agent's claim is not its start. The agent says it started (start_agent_action) before
it runs anything, and only then is the execution running: its lease begins, readings from
then on verify it, and a failure counts against its automation. A claim the agent has not
acknowledged within WARDEN_AGENT_ACK_SECONDS (its agent went away, the answer to its poll
was lost, it restarted) is offered again with the same token, so an agent that did start
it recognises it and never runs a second copy; after WARDEN_AGENT_OFFERS offers it is
cancelled (release_unacknowledged). Nothing ran, so nothing is verified, rolled back or
counted. A hand-off's claim starts at once: its task sends it there and then.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from governance.audit.log import PendingEvent, append_events
from remediation.choices import (
    EXECUTION_AGENT_CLAIMABLE,
    EXECUTION_OFFERED_AGAIN,
    EXECUTION_STARTS,
    ExecutionState,
    ready_for_agents,
)
from remediation.executions import ExecutionError
from remediation.executions.ending import cancel_locked, fail_rollback
from remediation.executions.holds import may_start
from remediation.executions.rows import announce_after_commit, audit_event, locked_execution
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
    # An agent says it started within this many seconds (POST .../started), and runs nothing
    # before Warden has answered that it may; None: a hand-off, started by its claim.
    start_within_seconds: int | None = None


@dataclass(frozen=True)
class Started:
    """The answer to an agent that says it started: run it, within this lease."""

    execution_id: int
    state: str
    lease_expires_at: datetime
    lease_seconds: int


def claim_agent_actions(host: Host, now: datetime) -> list[AgentAction]:
    """The agent's step: take this host's next action or rollback, to start within the ack
    window.

    One per poll, so nothing waits on the agent behind another action while its
    lease runs. A rollback goes first and proceeds under a pause (it restores a
    known state); a new action passes the whole dispatch check again here, in the
    claim's transaction: what was allowed when dispatched may not be any more. A claim
    whose agent never said it started is offered again here, when its window has passed.
    """
    with transaction.atomic():
        executions = list(
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host", "approval_request", "decision")
            .filter(
                ready_for_agents(now),
                host=host,
                handoff_target__isnull=True,  # an automation system runs those
            )
            .order_by("created_at")
        )
        rollbacks = (ExecutionState.ROLLBACK_PENDING, ExecutionState.ROLLBACK_CLAIMED)
        executions.sort(key=lambda e: e.state not in rollbacks)
        events: list[PendingEvent] = []
        actions: list[AgentAction] = []
        for execution in executions:
            if execution.state in EXECUTION_STARTS:
                release_unacknowledged(execution, now, events, announce=False)
                if execution.state not in EXECUTION_AGENT_CLAIMABLE:
                    continue  # offered often enough: cancelled
            rollback = execution.state == ExecutionState.ROLLBACK_PENDING
            if not rollback and not may_start(execution, now, events):
                continue
            actions.append(
                _claim(
                    execution,
                    f"agent:{host.name}",
                    settings.WARDEN_AGENT_ACK_SECONDS,
                    now,
                    events,
                )
            )
            break
        append_events(events)
        return actions


def start_agent_action(host: Host, execution_id: int, *, token: int, now: datetime) -> Started:
    """The agent says it is starting the action (or rollback) it claimed with `token`: from
    now it is running, with the agent's lease. A new action passes the dispatch check once
    more, here, at the instant it starts (a pause committed since the claim holds it).

    Idempotent: the same agent saying it again (its first answer lost) is told the same.
    Raises ExecutionError (`not_found`, `stale_token`, or `not_claimed` when the claim was
    offered again, cancelled or held meanwhile: the agent must not start it)."""
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host", "approval_request", "decision")
            .filter(pk=execution_id, host=host, handoff_target__isnull=True)
            .first()
        )
        if execution is None:
            raise ExecutionError("not_found", f"execution {execution_id} is not this host's")
        if execution.fencing_token != token:
            raise ExecutionError(
                "stale_token",
                f"token {token} is stale: execution {execution.pk} is at {execution.fencing_token}",
            )
        if execution.state in (ExecutionState.RUNNING, ExecutionState.ROLLING_BACK):
            return _started(execution)  # said again: its first answer was lost
        if execution.state not in EXECUTION_STARTS:
            raise ExecutionError(
                "not_claimed",
                f"execution {execution.pk} is {execution.state}: do not start it",
            )
        events: list[PendingEvent] = []
        rollback = execution.state == ExecutionState.ROLLBACK_CLAIMED
        allowed = rollback or may_start(execution, now, events)
        if allowed:
            start_claimed(execution, f"agent:{host.name}", now, events)
        append_events(events)
    if not allowed:
        raise ExecutionError(
            "not_claimed", f"execution {execution.pk} is {execution.state}: do not start it"
        )
    return _started(execution)


def claim_handoff(execution_id: int, now: datetime) -> AgentAction | None:
    """The hand-off task's claim, as an agent's (remediation.handoff): a dispatched action or
    a pending rollback of an execution an automation system runs, with a lease of the
    system's length and a new token, started at once. None if there is nothing to claim (a
    second delivery of the task, a cancellation) or the dispatch check no longer allows it."""
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
        actor = f"handoff:{target.name}"
        _claim(execution, actor, target.lease_seconds, now, events, audited=False)
        action = start_claimed(execution, actor, now, events, lease=target.lease_seconds)
        append_events(events)
        return action


def claim_token(execution: Execution, *, rollback: bool) -> int:
    """The fencing token of a claim: 2 * id - 1 for the run, 2 * id for its rollback.

    An execution's run is claimed, and offered again while its agent has not said it
    started, under one token; then its rollback under the next (a start never returns it
    to a claimable state). So the tokens of all executions are distinct and one execution's
    rise. A report made with another execution's token, replayed or forged, is therefore
    stale here, and needs no table-wide counter to be so; an agent offered a claim again
    knows it by its token, and never runs it twice."""
    token = 2 * execution.pk - (0 if rollback else 1)
    if token < execution.fencing_token:
        raise AssertionError(
            f"execution {execution.pk} is at token {execution.fencing_token}; "
            f"its {'rollback' if rollback else 'run'} would claim {token}"
        )
    return token


def release_unacknowledged(
    execution: Execution, now: datetime, events: list[PendingEvent], *, announce: bool = True
) -> None:
    """A claim whose agent has not said it started within its window (the caller holds the
    lock): offered again, the same token, or after WARDEN_AGENT_OFFERS offers cancelled (a
    rollback: failed, a person checks the host). Nothing ran: never verified, rolled back
    or counted against its automation. `announce`: wake the agent's poll (not when the
    caller is that poll, claiming it again)."""
    rollback = execution.state == ExecutionState.ROLLBACK_CLAIMED
    what = "the rollback" if rollback else "it"
    if execution.offers >= settings.WARDEN_AGENT_OFFERS:
        why = (
            f"the agent took {what} {execution.offers} times and never said it started; nothing ran"
        )
        if rollback:
            fail_rollback(execution, now, events, "system", f"{why}; a person must check the host")
        else:
            cancel_locked(execution, now, events, "system", why, ran=False)
        return
    execution.move_to(EXECUTION_OFFERED_AGAIN[execution.state], now)
    execution.lease_expires_at = None
    execution.save(update_fields=["state", "state_changed_at", "lease_expires_at"])
    if announce:
        announce_after_commit(execution)
    events.append(
        audit_event(
            execution,
            "system",
            "execution.offered_again",
            f"the agent did not say it started {what} within "
            f"{settings.WARDEN_AGENT_ACK_SECONDS} s; offered again (nothing ran)",
            offers=execution.offers,
            token=execution.fencing_token,
        )
    )


def start_claimed(
    execution: Execution,
    actor: str,
    now: datetime,
    events: list[PendingEvent],
    *,
    lease: int | None = None,
) -> AgentAction:
    """The runner started the claimed run or rollback (the caller holds the lock): it is
    running from `now`, under the runner's lease."""
    rollback = execution.state == ExecutionState.ROLLBACK_CLAIMED
    lease = settings.WARDEN_AGENT_LEASE_SECONDS if lease is None else lease
    execution.move_to(EXECUTION_STARTS[execution.state], now)
    execution.lease_expires_at = now + timedelta(seconds=lease)
    execution.offers = 0
    if not rollback:
        execution.started_at = now
    execution.save(
        update_fields=["state", "state_changed_at", "lease_expires_at", "offers", "started_at"]
    )
    action, argv = _what_runs(execution, rollback)
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
    return _action(execution, rollback, lease, None)


def _claim(
    execution: Execution,
    actor: str,
    window: int,
    now: datetime,
    events: list[PendingEvent],
    *,
    audited: bool = True,
) -> AgentAction:
    """Take a dispatched run or pending rollback: claimed under its token until `window`
    seconds from now."""
    rollback = execution.state == ExecutionState.ROLLBACK_PENDING
    execution.move_to(EXECUTION_AGENT_CLAIMABLE[execution.state], now)
    execution.fencing_token = claim_token(execution, rollback=rollback)
    execution.lease_expires_at = now + timedelta(seconds=window)
    execution.offers += 1
    execution.save(
        update_fields=["state", "state_changed_at", "fencing_token", "lease_expires_at", "offers"]
    )
    action, _ = _what_runs(execution, rollback)
    if audited:
        runner = actor.split(":", 1)[1]
        events.append(
            audit_event(
                execution,
                actor,
                "execution.rollback_claimed" if rollback else "execution.claimed",
                f"{runner} took {action}"
                + (" again" if execution.offers > 1 else "")
                + f"; waiting for it to say it started (within {window} s)",
                token=execution.fencing_token,
                offers=execution.offers,
            )
        )
    return _action(execution, rollback, settings.WARDEN_AGENT_LEASE_SECONDS, window)


def _what_runs(execution: Execution, rollback: bool) -> tuple[str, list[str]]:
    runbook = execution.runbook
    if rollback:
        return execution.rollback_action or runbook.rollback_action, list(execution.rollback_argv)
    return execution.action or runbook.action, list(execution.argv)


def _action(
    execution: Execution, rollback: bool, lease: int, start_within: int | None
) -> AgentAction:
    action, argv = _what_runs(execution, rollback)
    return AgentAction(
        execution_id=execution.pk,
        token=execution.fencing_token,
        kind="rollback" if rollback else "run",
        action=action,
        argv=tuple(argv),
        argv_digest=argv_digest(argv) if argv else "",
        runbook=execution.runbook.name,
        ticket_id=execution.ticket.ticket_id,
        lease_expires_at=execution.lease_expires_at,
        lease_seconds=lease,
        start_within_seconds=start_within,
    )


def _started(execution: Execution) -> Started:
    return Started(
        execution_id=execution.pk,
        state=execution.state,
        lease_expires_at=execution.lease_expires_at,
        lease_seconds=settings.WARDEN_AGENT_LEASE_SECONDS,
    )
