"""django-q2 tasks: thin wake-up calls that take ids and tolerate rows that are gone."""

from dataclasses import asdict

from django.utils import timezone

from governance.approvals.requests import expire_approval_requests
from governance.audit.checkpoints import CheckpointRefused, sign_checkpoint
from governance.audit.log import checkpoint
from governance.pauses.state import record_lapsed_pauses
from remediation import handoff, triage
from remediation.executions import holds, queueing, sweeps


def dispatch_execution(execution_id: int) -> str:
    return queueing.dispatch_execution(execution_id, timezone.now())


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
