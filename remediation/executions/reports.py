"""Reports: what a runner says happened, recorded only from the holder of the current
fencing token (compare-and-set), so a stale or duplicate report changes nothing. An agent
must name the exact argv decided; a report that comes after the execution stopped waiting
is kept and audited, never lost; a hand-off's delivery to its automation system is
recorded under the claim's token too.

An agent that did not start what it claimed says so (RunReport.not_started): a claim is
offered again, and one Warden believed started (the answer to its start was lost) ends
cancelled as never run, so nothing is verified, rolled back or counted. A report of what
ran on a claim the agent never said it started (an agent older than the start) starts it
as it is recorded."""

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from governance.audit.log import PendingEvent, append_events
from remediation.choices import EXECUTION_STARTS, ExecutionState
from remediation.executions import ExecutionError
from remediation.executions.claims import release_unacknowledged, start_claimed
from remediation.executions.ending import (
    after_ending,
    cancel_locked,
    count_failed_attempt,
    fail_rollback,
    start_rollback,
)
from remediation.executions.rows import audit_event, locked_execution
from remediation.models import Execution, Host
from warden_agent.argv import argv_digest


@dataclass(frozen=True)
class RunReport:
    """What a runner says happened. An agent names the argv it ran ([] if it ran nothing:
    it refused) and its exit code; an automation system runs a job, not an argv (None)."""

    ok: bool
    output: str
    argv: list[str] | None = None
    argv_digest: str = ""
    exit_code: int | None = None
    # The agent did not start it (it could not say it started, or it stopped first): nothing
    # ran, and it may be offered again.
    not_started: bool = False

    @property
    def refused(self) -> bool:
        """The runner ran nothing: it refused, or never started."""
        return self.not_started or (self.argv == [] and not self.ok)


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


# Where a report is awaited: claimed (the agent may not have said it started yet) or running.
AWAITING_REPORT = (*EXECUTION_STARTS, ExecutionState.RUNNING, ExecutionState.ROLLING_BACK)
RUNS = (ExecutionState.CLAIMED, ExecutionState.RUNNING)


def _report(
    executions: Any, actor: str, not_found: str, report: RunReport, *, token: int, now: datetime
) -> Execution:
    refused: ExecutionError | None = None
    ok, output = report.ok, report.output
    with transaction.atomic():
        execution = (
            executions.select_for_update(of=("self",))
            .select_related("ticket", "runbook", "host", "approval_request", "decision")
            .first()
        )
        if execution is None:
            raise ExecutionError("not_found", not_found)
        current = execution.fencing_token == token
        if report.not_started and current:
            return _not_started(execution, actor, report, now)
        late = execution.state not in AWAITING_REPORT
        if late and current:
            # Cancelled, or its lease ran out, while the agent was still at it: what the
            # agent says happened on the host is kept and audited, never lost; the state
            # stays as the sweeper or the person left it.
            _record_late_report(execution, actor, ok=ok, output=output[:10_000])
        if late:
            refused = ExecutionError(
                "not_running", f"execution {execution.pk} is {execution.state}, not running"
            )
        elif not current:
            refused = ExecutionError(
                "stale_token",
                f"token {token} is stale: execution {execution.pk} is at {execution.fencing_token}",
            )
        else:
            if execution.state in EXECUTION_STARTS and not report.refused:
                # What ran, from an agent that never said it started (one older than the
                # start): it started, as far as Warden can know, now.
                events: list[PendingEvent] = []
                start_claimed(execution, actor, now, events)
                append_events(events)
            refused = _refuse_another_command(execution, actor, report, now)
            if refused is None:
                _record_report(execution, actor, report, now=now)
    if refused is not None:
        raise refused
    return execution


def _not_started(execution: Execution, actor: str, report: RunReport, now: datetime) -> Execution:
    """The holder of the current token did not start it (the caller holds the lock). Claimed:
    offered again (or cancelled after enough offers). Believed started, because the answer
    to the agent's start was lost: cancelled as never run, or its rollback failed and a
    person checks. Anything else has moved on already, and nothing ran to record."""
    events: list[PendingEvent] = []
    why = f"the agent did not start it: {report.output}"[:500]
    if execution.state in EXECUTION_STARTS:
        release_unacknowledged(execution, now, events)
    elif execution.state in (ExecutionState.RUNNING, ExecutionState.VERIFYING):
        cancel_locked(execution, now, events, actor, why, ran=False)
    elif execution.state == ExecutionState.ROLLING_BACK:
        fail_rollback(execution, now, events, actor, f"{why}; a person must check the host")
    else:
        raise ExecutionError(
            "not_running", f"execution {execution.pk} is {execution.state}, not running"
        )
    append_events(events)
    return execution


def _expected_argv(execution: Execution) -> list[str]:
    return execution.argv if execution.state in RUNS else execution.rollback_argv


def _refuse_another_command(
    execution: Execution, actor: str, report: RunReport, now: datetime
) -> ExecutionError | None:
    """An agent that says it ran anything but the argv decided: the report is refused, and
    since something not decided may have run, the execution ends and people are told."""
    if report.argv is None:  # an automation system runs a job, not an argv
        return None
    if report.refused:  # nothing ran
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
        audit_event(
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
    if execution.state in RUNS:
        execution.output = f"[refused report: {ran}]\n{report.output}"[:10_000]
        execution.save(update_fields=["output"])
        cancel_locked(execution, now, events, "system", why)
    else:
        execution.rollback_output = f"[refused report: {ran}]\n{report.output}"[:10_000]
        fail_rollback(execution, now, events, actor, why)
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
        execution = locked_execution(execution_id)
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
                audit_event(execution, actor, "execution.handed_off", detail, reference=reference)
            )
        elif outcome == "refused" and current:
            if execution.state == ExecutionState.RUNNING:
                # Nothing ran: not a failed fix, so no count against its automation.
                cancel_locked(
                    execution, now, events, "system", f"hand-off refused: {detail}", ran=False
                )
            else:
                summary = f"rollback hand-off refused: {detail}; a person must check the host"
                fail_rollback(execution, now, events, actor, summary)
        else:
            events.append(
                audit_event(
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
    if execution.state in RUNS:
        execution.output = output
        execution.exit_code = report.exit_code
        if report.refused:
            # The agent refused it (not on its allow-list, or not as decided): nothing ran,
            # so nothing to roll back and no failed fix to count. People decide.
            execution.save(update_fields=["output", "exit_code", "lease_expires_at"])
            why = f"the host's agent refused it: {output}"[:500]
            cancel_locked(execution, now, events, actor, why, ran=False)
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
            audit_event(
                execution, actor, f"execution.{execution.state}", summary, output=output, **ran
            )
        )
        if not ok:
            count_failed_attempt(execution, now, events)
            start_rollback(execution, events, "the action failed")
    else:
        execution.rollback_output = output
        execution.rollback_exit_code = report.exit_code
        execution.move_to(ExecutionState.ROLLED_BACK if ok else ExecutionState.ROLLBACK_FAILED, now)
        execution.finished_at = now
        events.append(
            audit_event(
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
        after_ending(execution, now, events)
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
                audit_event(
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
