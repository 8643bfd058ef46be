"""django-q2 tasks: thin wake-up calls that take ids and tolerate rows that are gone."""

import logging
import time
from dataclasses import asdict

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from governance.approvals.requests import expire_approval_requests
from governance.audit.checkpoints import CheckpointRefused, sign_checkpoint
from governance.audit.log import checkpoint
from governance.pauses.state import record_lapsed_pauses
from remediation import handoff, triage
from remediation.executions import holds, queueing, sweeps

logger = logging.getLogger("warden.tasks")


# Seconds between attempts of a dispatch that met a connection error: about 16 s in all,
# within Q_TIMEOUT, enough for PostgreSQL to restart or free a connection.
DISPATCH_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


def dispatch_execution(execution_id: int) -> str:
    """Dispatch, tried again on a connection error (PostgreSQL restarting or out of
    connections, a pooled connection it closed): the failed attempt's transaction rolled
    back, and a dispatch runs once however often it is tried."""
    for delay in DISPATCH_RETRY_DELAYS:
        try:
            return queueing.dispatch_execution(execution_id, timezone.now())
        except (OperationalError, InterfaceError) as exc:
            logger.warning("dispatch of execution %s: %s; again in %g s", execution_id, exc, delay)
            connection.close()  # the pool replaces a broken connection
            time.sleep(delay)
    return queueing.dispatch_execution(execution_id, timezone.now())  # the last try raises


def hand_off_execution(execution_id: int) -> str:
    return handoff.hand_off_execution(execution_id, timezone.now())


def release_held_executions() -> int:
    return holds.release_held_executions(timezone.now())


def triage_tickets() -> int:
    """Enqueued after an integrator's ticket is stored: triages a batch of `processing`
    tickets in one model call and decides them; returns how many."""
    return triage.triage_pending(timezone.now())


def sweep() -> dict:
    """Scheduled every minute: lost tasks, leases, every waiting state's deadline, approvals
    expiring and pauses lapsing, each audited; then the chain head is published."""
    now = timezone.now()
    report = asdict(sweeps.sweep(now))
    report["triage_waiting"] = triage.requeue_lost_triage(now)
    report["approvals_expired"] = expire_approval_requests(now)
    report["pauses_lapsed"] = record_lapsed_pauses(now)
    head = checkpoint()  # the chain head, published in the worker's log every minute
    report["audit_head"] = f"{head.sequence}:{head.hash}"
    try:  # and signed, when the log has grown (a refusal is logged by sign_checkpoint)
        report["audit_checkpoint"] = sign_checkpoint().tree_size
    except CheckpointRefused:
        report["audit_checkpoint"] = None
    return report
