"""What a notice tells: everything a person needs to act, read when it is sent.

describe reads a ticket as things stand now (its host's readings, the runbook with its
risk and exact commands, the decision's reasons, the approval request's progress or the
execution's outcome) into a NoticeItem; the messages and the confirmation page a verdict
link opens both show it. notice_item does this for one Notice row.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.urls import reverse

from governance.models import ApprovalRequest, ApprovalStatus, Decision, Notice, NoticeKind, Verdict
from governance.notices.links import absolute
from governance.rules.checks import RISK_BY_ACTION_TYPE
from governance.rules.labels import risk_label, severity_label
from remediation.choices import Category, ExecutionState
from remediation.models import Execution, Runbook, Ticket
from scoring.models import MetricSample

READINGS = (
    ("disk_usage", "Disk", "{:.1f} %"),
    ("memory_usage", "Memory", "{:.1f} %"),
    ("cpu_usage", "CPU", "{:.1f} %"),
    ("dns_latency_ms", "DNS latency", "{:.0f} ms"),
)


@dataclass(frozen=True)
class NoticeItem:
    """Everything one notice tells, read from the database when it is sent."""

    notice_id: int
    kind: str
    title: str
    host: str
    ticket_id: str
    ticket_title: str
    category: str
    severity: str
    what_happened: tuple[str, ...]
    readings: tuple[tuple[str, str], ...]
    readings_at: datetime | None
    latest_readings: tuple[tuple[str, str], ...] = ()  # when newer than `readings`
    latest_at: datetime | None = None
    runbook: str = ""
    runbook_title: str = ""
    action: str = ""
    commands: tuple[str, ...] = ()
    risk: str = ""
    rollback: str = ""
    blast_radius: str = ""
    reasons: tuple[str, ...] = ()
    approval_request_id: int | None = None
    pending: bool = False
    request_status: str = ""
    approvals_so_far: int = 0
    approvals_needed: int = 0
    expires_at: datetime | None = None
    time_left: str = ""
    execution_state: str = ""
    output: str = ""
    # ticket, evidence, request, execution, review
    links: dict[str, str] = field(default_factory=dict)
    # One line in a digest, past the ones it shows whole (messages.DIGEST_LISTED): read
    # from the notice and its ticket alone, so a storm's digest costs no query per item.
    brief: bool = False


def time_left(expires_at: datetime, now: datetime) -> str:
    """'3 h 20 min' until `expires_at`, or 'expired'."""
    minutes = int((expires_at - now).total_seconds() // 60)
    if minutes <= 0:
        return "expired"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def readings_of(sample: MetricSample | None) -> tuple[tuple[str, str], ...]:
    """A sample's metrics as people read them: ('Disk', '97.0 %'), ..."""
    if sample is None:
        return ()
    rows = [(label, unit.format(getattr(sample, name))) for name, label, unit in READINGS]
    rows.append(("Firewall change", "requested" if sample.firewall_change_requested else "none"))
    return tuple(rows)


def notice_item(notice: Notice, now: datetime) -> NoticeItem | None:
    """What `notice` tells, as things stand at `now`; None if its ticket is gone."""
    if notice.ticket is None:
        return None
    item = describe(
        notice.ticket,
        kind=notice.kind,
        request=notice.approval_request,
        execution=notice.execution,
        lines=tuple(line for line in notice.summary.splitlines() if line),
        now=now,
        notice_id=notice.pk,
    )
    review = getattr(notice.execution, "review", None) if notice.execution else None
    if review is not None:  # what Warden did by itself: where to acknowledge or flag it
        item.links["review"] = absolute(
            reverse("admin:feedback_postactionreview_change", args=[review.pk])
        )
    return item


def brief_item(notice: Notice, now: datetime) -> NoticeItem | None:
    """What `notice` tells in one line of a digest: its ticket, host and request, read with
    the notice (the sender selects them together); None if its ticket is gone."""
    ticket, request = notice.ticket, notice.approval_request
    if ticket is None:
        return None
    links = {"ticket": absolute(reverse("admin:remediation_ticket_change", args=[ticket.pk]))}
    values: dict[str, Any] = {}
    if request is not None:
        values = {
            "approval_request_id": request.pk,
            "pending": request.status == ApprovalStatus.PENDING and request.expires_at > now,
            "request_status": request.get_status_display(),
        }
    return NoticeItem(
        notice_id=notice.pk,
        kind=notice.kind,
        title=NoticeKind(notice.kind).label,
        host=ticket.host_name,
        ticket_id=ticket.ticket_id,
        ticket_title=ticket.title,
        category=Category(ticket.category).label if ticket.category else "no category yet",
        severity=severity_label(ticket.severity),
        what_happened=tuple(line for line in notice.summary.splitlines() if line)[:1],
        readings=(),
        readings_at=None,
        links=links,
        brief=True,
        **values,
    )


def describe(
    ticket: Ticket,
    *,
    kind: str,
    now: datetime,
    request: ApprovalRequest | None = None,
    execution: Execution | None = None,
    lines: tuple[str, ...] = (),
    notice_id: int = 0,
) -> NoticeItem:
    """What people need to act on `ticket` (and its approval request or execution) at
    `now`: the notices and the confirmation page both show this."""
    decision = decision_behind(ticket, request, execution)
    latest = MetricSample.objects.filter(host_id=ticket.host_id).order_by("-taken_at").first()
    # An approval binds to the readings its decision was made on: those are shown first.
    sample = decision.sample if request is not None and decision is not None else None
    sample = sample or latest
    runbook = (
        (request.runbook if request else None)
        or (execution.runbook if execution else None)
        or (decision.runbook if decision else None)
    )
    links = {
        "ticket": absolute(reverse("admin:remediation_ticket_change", args=[ticket.pk])),
        "evidence": absolute(reverse("ticket-evidence-page", args=[ticket.ticket_id])),
    }
    values: dict[str, Any] = {}
    if latest is not None and sample is not None and latest.pk != sample.pk:
        values |= {"latest_readings": readings_of(latest), "latest_at": latest.taken_at}
    if runbook is not None:
        values |= runbook_facts(runbook, decision, execution)
    if request is not None:
        links["request"] = absolute(
            reverse("admin:governance_approvalrequest_change", args=[request.pk])
        )
        values |= request_facts(request, now)
    if execution is not None:
        links["execution"] = absolute(
            reverse("admin:remediation_execution_change", args=[execution.pk])
        )
        values |= execution_facts(execution)
    return NoticeItem(
        notice_id=notice_id,
        kind=kind,
        title=NoticeKind(kind).label,
        host=ticket.host_name,
        ticket_id=ticket.ticket_id,
        ticket_title=ticket.title,
        category=Category(ticket.category).label if ticket.category else "no category yet",
        severity=severity_label(ticket.severity),
        what_happened=lines,
        readings=readings_of(sample),
        readings_at=sample.taken_at if sample else None,
        reasons=tuple(decision.reasons) if decision else (),
        links=links,
        **values,
    )


def decision_behind(
    ticket: Ticket, request: ApprovalRequest | None, execution: Execution | None
) -> Decision | None:
    """The decision the request or execution came from, else the ticket's latest."""
    if request is not None and request.decision_id:
        return request.decision
    if execution is not None and execution.decision_id:
        return execution.decision
    return ticket.decisions.select_related("runbook").order_by("-created_at").first()


def runbook_facts(
    runbook: Runbook, decision: Decision | None, execution: Execution | None
) -> dict[str, Any]:
    """The runbook as it runs here: the exact commands (the execution's, else the ones the
    decision bound, else the runbook's), its risk, its rollback and its blast radius."""
    decided = decision if decision is not None and decision.runbook_id == runbook.pk else None
    if execution is not None:
        commands, action = execution.commands, execution.action
    elif decided is not None:
        commands, action = decided.commands, decided.action
    else:
        commands, action = runbook.commands, runbook.action
    risk = decided.risk_level if decided is not None else ""
    return {
        "runbook": runbook.name,
        "runbook_title": runbook.title,
        "action": action or runbook.action,
        "commands": tuple(commands or ()),
        "risk": risk_label(risk or RISK_BY_ACTION_TYPE.get(runbook.action_type, "")),
        "rollback": (
            f"{runbook.rollback_action} (reversible)"
            if runbook.reversible and runbook.rollback_action
            else "none: it cannot be undone"
        ),
        "blast_radius": runbook.blast_radius,
    }


def request_facts(request: ApprovalRequest, now: datetime) -> dict[str, Any]:
    """Where the approval request stands at `now`: pending or not, approvals so far of
    those needed, and the time left."""
    return {
        "approval_request_id": request.pk,
        "pending": request.status == ApprovalStatus.PENDING and request.expires_at > now,
        "request_status": request.get_status_display(),
        "approvals_so_far": request.approvals.filter(verdict=Verdict.APPROVE).count(),
        "approvals_needed": request.required_approvals,
        "expires_at": request.expires_at,
        "time_left": time_left(request.expires_at, now),
    }


def execution_facts(execution: Execution) -> dict[str, Any]:
    """How the execution ended: its state and the tail of its output (the rollback's when
    it rolled back)."""
    return {
        "execution_state": ExecutionState(execution.state).label,
        "output": (execution.rollback_output or execution.output)[-500:],
    }
