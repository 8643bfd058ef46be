"""What a ticket's decision starts, and deciding a ticket again.

A decision is recorded and audited; then NO_ACTION and shadow decisions stop there,
AUTO_HEAL queues an execution, a runbook that needs people gets an approval request,
and a ticket no runbook may fix is escalated. Every way a ticket is decided (an agent's
metrics, an integrator's or an alert's ticket, a runbook or policy change) ends here.
"""

from datetime import datetime

from governance.approvals.requests import request_approval
from governance.audit.log import PendingEvent, event
from governance.audit.tickets import escalate_ticket
from governance.decisions.deciding import decide_on_sample
from governance.decisions.dispatch import executes_automatically
from governance.models import Decision
from governance.rules.facts import NO_ACTION
from remediation.executions.queueing import queue_execution
from remediation.models import Ticket


def redecide_ticket(
    ticket: Ticket, *, cause: str, now: datetime, events: list[PendingEvent]
) -> Decision | None:
    """Decide a locked open ticket again, on the readings its last decision was made on,
    after what that decision relied on changed (`cause`). None without such readings."""
    last = ticket.decisions.select_related("sample").order_by("-created_at").first()
    sample = last.sample if last is not None else None
    if sample is None:
        return None
    decision = decide_on_sample(ticket, sample, model_version_id=sample.model_version_id, now=now)
    act_on_decision(ticket, decision, now, events, cause=cause)
    return decision


def act_on_decision(
    ticket: Ticket,
    decision: Decision,
    now: datetime,
    events: list[PendingEvent],
    cause: str = "",
) -> None:
    """NO_ACTION and shadow decisions are recorded; AUTO_HEAL queues; the rest go to people.

    `cause`: why the ticket was decided again, when it was.
    """
    conclusion = decision.reasons[-1] if decision.reasons else ""
    again = f" (decided again: {cause})" if cause else ""
    events.append(
        event(
            "system",
            "decision.made",
            decision,
            f"{ticket.ticket_id}{again}: {conclusion}",  # the conclusion names the outcome
            ticket_id=ticket.ticket_id,
            data={
                "cause": cause,
                "runbook_version": decision.runbook_version,
                "action": decision.action,
                "commands": decision.commands,
                "outcome": decision.outcome,
                "model_outcome": decision.model_outcome,
                "policy": decision.policy.name if decision.policy else None,
                "policy_version": decision.policy_version,
                "runbook": decision.runbook.name if decision.runbook else None,
                "reasons": decision.reasons,
                "safety_checks": decision.safety_checks,
                "reliability": decision.reliability,
            },
        )
    )
    if decision.outcome == NO_ACTION or decision.shadow:
        return
    if executes_automatically(decision):
        queue_execution(
            ticket=ticket,
            runbook=decision.runbook,
            idempotency_key=f"decision:{decision.pk}",
            now=now,
            events=events,
            decision=decision,
        )
    elif decision.allowed and decision.runbook is not None:
        request_approval(
            ticket=ticket,
            decision=decision,
            runbook=decision.runbook,
            required_approvals=decision.required_approvals,
            now=now,
            events=events,
            # Whoever opened the ticket asked for what it needs: never one of its approvers.
            requested_by=ticket.opened_by,
        )
    else:
        events += escalate_ticket(ticket, "no runbook may run under the policy")
