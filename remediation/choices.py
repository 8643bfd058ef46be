"""Runbook risk classes, ticket and execution states, and the allowed moves between them."""

from datetime import datetime

from django.db import models
from django.db.models import Q


class ActionType(models.TextChoices):
    READ_ONLY = "read_only", "Read only"
    SAFE_WRITE = "safe_write", "Safe write"
    CRITICAL_WRITE = "critical_write", "Critical write"


class Category(models.TextChoices):
    DISK = "disk", "Disk"
    MEMORY = "memory", "Memory"
    CPU = "cpu", "CPU"
    DNS = "dns", "DNS"
    FIREWALL = "firewall", "Firewall"
    NETWORK = "network", "Network"
    STORAGE = "storage", "Storage"
    CACHE = "cache", "Cache"
    SECURITY = "security", "Security"
    SERVER = "server", "Server"


# Actions no autonomous decision may take (PHASE-65's forbidden list); a
# runbook that touches one always needs a person.
class ForbiddenTouch(models.TextChoices):
    CUSTOMER_DATA_DELETION = "customer_data_deletion", "Deletes customer data"
    CONTRACTS_PRICING = "contracts_pricing", "Changes contracts or pricing"
    AUTHENTICATION = "authentication", "Disables authentication"
    LEGAL_COMPLIANCE = "legal_compliance", "Legal or compliance action"


class Priority(models.TextChoices):
    """How urgent the system that opened a ticket says it is (recorded and shown; the
    escalation facts, not the priority, are what send a ticket to people)."""

    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


# What people read where a ticket's host would be while it names none (remediation.triage).
NO_HOST_YET = "no host yet"


class TicketStatus(models.TextChoices):
    # Stored, its text not triaged yet (remediation.triage): open, nothing decided.
    PROCESSING = "processing", "Processing"
    OPEN = "open", "Open"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    REMEDIATING = "remediating", "Remediating"
    ESCALATED = "escalated", "Escalated to a person"
    # The seed's: a fix was tried and failed or was rolled back; a person finishes it.
    PARTIALLY_REMEDIATED = "partially_remediated", "Partially remediated"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


# A host has at most one ticket per category in these states; repeats count on it.
TICKET_OPEN_STATUSES = frozenset(
    {
        TicketStatus.PROCESSING,
        TicketStatus.OPEN,
        TicketStatus.AWAITING_APPROVAL,
        TicketStatus.REMEDIATING,
        TicketStatus.ESCALATED,
        TicketStatus.PARTIALLY_REMEDIATED,
    }
)
# Waiting for a person (escalated, or a fix that did not hold): what the console lists first.
TICKET_PEOPLE_STATUSES = frozenset({TicketStatus.ESCALATED, TicketStatus.PARTIALLY_REMEDIATED})

# Escalated and partially remediated both wait for a person, with the same onward moves.
_PEOPLE_MOVES = frozenset(
    {
        TicketStatus.AWAITING_APPROVAL,
        TicketStatus.REMEDIATING,
        TicketStatus.RESOLVED,
        TicketStatus.CLOSED,
    }
)

TICKET_TRANSITIONS: dict[str, frozenset[str]] = {
    # Triage opens it to be decided, or hands it to a person to name its host.
    TicketStatus.PROCESSING: frozenset(
        {TicketStatus.OPEN, TicketStatus.ESCALATED, TicketStatus.CLOSED}
    ),
    TicketStatus.OPEN: frozenset(
        {
            TicketStatus.AWAITING_APPROVAL,
            TicketStatus.REMEDIATING,
            TicketStatus.ESCALATED,
            TicketStatus.RESOLVED,
            TicketStatus.CLOSED,
        }
    ),
    TicketStatus.AWAITING_APPROVAL: frozenset(
        # resolved: a person fixed it by hand while it waited
        {
            TicketStatus.REMEDIATING,
            TicketStatus.ESCALATED,
            TicketStatus.RESOLVED,
            TicketStatus.CLOSED,
        }
    ),
    TicketStatus.REMEDIATING: frozenset(
        {
            TicketStatus.RESOLVED,
            TicketStatus.ESCALATED,
            TicketStatus.PARTIALLY_REMEDIATED,
            TicketStatus.CLOSED,
        }
    ),
    TicketStatus.ESCALATED: _PEOPLE_MOVES,
    TicketStatus.PARTIALLY_REMEDIATED: _PEOPLE_MOVES,
    TicketStatus.RESOLVED: frozenset(),
    TicketStatus.CLOSED: frozenset(),
}


class ExecutionState(models.TextChoices):
    QUEUED = "queued", "Queued"
    HELD = "held", "Held (a pause, or a check time can pass)"
    DISPATCHED = "dispatched", "Waiting for the agent"
    CLAIMED = "claimed", "Taken by the agent, not started yet"
    RUNNING = "running", "Running on the agent"
    VERIFYING = "verifying", "Verifying with fresh metrics"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLBACK_PENDING = "rollback_pending", "Rollback waiting for the agent"
    ROLLBACK_CLAIMED = "rollback_claimed", "Rollback taken by the agent, not started yet"
    ROLLING_BACK = "rolling_back", "Rolling back on the agent"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed"
    CANCELLED = "cancelled", "Cancelled"


class VerifiedBy(models.TextChoices):
    """What judged a fix that reached verification."""

    READINGS = "readings", "The host's own fresh readings"
    ALERT = "alert", "A monitoring system's resolved alert"
    DEADLINE = "deadline", "No healthy reading before the deadline"


EXECUTION_TRANSITIONS: dict[str, frozenset[str]] = {
    ExecutionState.QUEUED: frozenset(
        {ExecutionState.DISPATCHED, ExecutionState.HELD, ExecutionState.CANCELLED}
    ),
    ExecutionState.HELD: frozenset({ExecutionState.QUEUED, ExecutionState.CANCELLED}),
    ExecutionState.DISPATCHED: frozenset(
        {ExecutionState.CLAIMED, ExecutionState.HELD, ExecutionState.CANCELLED}
    ),
    # Claimed: the agent has it but has not said it started. It starts (running) only when
    # the agent says so; unacknowledged, it is offered again (dispatched) or cancelled, and
    # the dispatch check at the start may still hold or cancel it. Never verified, never
    # rolled back, never counted: nothing ran.
    ExecutionState.CLAIMED: frozenset(
        {
            ExecutionState.RUNNING,
            ExecutionState.DISPATCHED,
            ExecutionState.HELD,
            ExecutionState.CANCELLED,
        }
    ),
    # An expired lease goes to VERIFYING: the host's metrics say what happened,
    # the action is never blindly run again.
    # Every unfinished state may be cancelled by a person (with a reason) or time out:
    # nothing waits for ever. A cancelled run's late report is still recorded.
    ExecutionState.RUNNING: frozenset(
        {ExecutionState.VERIFYING, ExecutionState.FAILED, ExecutionState.CANCELLED}
    ),
    ExecutionState.VERIFYING: frozenset(
        {ExecutionState.SUCCEEDED, ExecutionState.FAILED, ExecutionState.CANCELLED}
    ),
    ExecutionState.FAILED: frozenset({ExecutionState.ROLLBACK_PENDING}),
    ExecutionState.SUCCEEDED: frozenset({ExecutionState.ROLLBACK_PENDING}),
    ExecutionState.ROLLBACK_PENDING: frozenset(
        {
            ExecutionState.ROLLBACK_CLAIMED,
            ExecutionState.ROLLBACK_FAILED,
            ExecutionState.CANCELLED,
        }
    ),
    ExecutionState.ROLLBACK_CLAIMED: frozenset(
        {
            ExecutionState.ROLLING_BACK,
            ExecutionState.ROLLBACK_PENDING,
            ExecutionState.ROLLBACK_FAILED,
            ExecutionState.CANCELLED,
        }
    ),
    ExecutionState.ROLLING_BACK: frozenset(
        {ExecutionState.ROLLED_BACK, ExecutionState.ROLLBACK_FAILED, ExecutionState.CANCELLED}
    ),
    ExecutionState.ROLLED_BACK: frozenset(),
    ExecutionState.ROLLBACK_FAILED: frozenset(),
    ExecutionState.CANCELLED: frozenset(),
}

# Executions that still hold their host: the blast radius counts these, a person may
# cancel them and the sweeper times each of them out.
EXECUTION_ACTIVE_STATES = frozenset(
    {
        ExecutionState.QUEUED,
        ExecutionState.HELD,
        ExecutionState.DISPATCHED,
        ExecutionState.CLAIMED,
        ExecutionState.RUNNING,
        ExecutionState.VERIFYING,
        ExecutionState.ROLLBACK_PENDING,
        ExecutionState.ROLLBACK_CLAIMED,
        ExecutionState.ROLLING_BACK,
    }
)
# What a runner picks up, the action or its rollback, and the state its claim moves it to.
EXECUTION_AGENT_CLAIMABLE = {
    ExecutionState.DISPATCHED: ExecutionState.CLAIMED,
    ExecutionState.ROLLBACK_PENDING: ExecutionState.ROLLBACK_CLAIMED,
}
# A claim starts when its runner says so (an agent) or at once (a hand-off's task, which
# sends it there and then).
EXECUTION_STARTS = {
    ExecutionState.CLAIMED: ExecutionState.RUNNING,
    ExecutionState.ROLLBACK_CLAIMED: ExecutionState.ROLLING_BACK,
}
# A claim its agent never said it started is offered again from where it was taken.
EXECUTION_OFFERED_AGAIN = {claimed: ready for ready, claimed in EXECUTION_AGENT_CLAIMABLE.items()}


def ready_for_agents(now: datetime) -> Q:
    """Executions an agent's poll takes: waiting for it, or claimed by it without its saying
    it started within the ack window (lease_expires_at), to be offered again."""
    return Q(state__in=list(EXECUTION_AGENT_CLAIMABLE)) | Q(
        state__in=list(EXECUTION_STARTS), lease_expires_at__lt=now
    )


class IllegalTransition(Exception):
    """A state change the transition table does not allow."""


def check_transition(table: dict[str, frozenset[str]], current: str, target: str) -> None:
    """Raise IllegalTransition unless `table` allows current -> target."""
    if target not in table.get(current, frozenset()):
        raise IllegalTransition(f"cannot move from {current} to {target}")
