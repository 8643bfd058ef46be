"""Executions, exactly once: queue, dispatch, agent claim, report, verify, roll back, sweep.

The Execution row is the truth and the django-q2 task only a wake-up call.
A row is created once per idempotency key and enqueued after commit (queueing); the
worker dispatches it under select_for_update after re-checking pauses and approvals in
the same transaction (holds); the agent claims it with a lease and a new fencing token
(claims) and reports with that token, compare-and-set, so a stale or duplicate report
changes nothing (reports). Fresh metrics or a resolved alert verify it (verification);
every ending sets off the same follow-ups (ending). A scheduled sweeper re-enqueues rows
whose task vanished, and reconciles an expired lease by verifying the host's fresh
metrics, never by running the action again (sweeps). What people do to an execution,
cancel it or roll it back, is in remediation.actions.

This module holds only the refusal every part raises, so each can reach it without
importing the others.
"""

from governance.audit.errors import Conflict, NotFound


class ExecutionError(Conflict):
    """A request about an execution that cannot be honoured; `code` is machine-readable."""

    status_by_code = {"not_found": NotFound.status}
