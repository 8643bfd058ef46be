"""One ticket's whole story, as evidence: what opened it, each decision and why, each
approval, what ran and what it said, verification, rollback, closing, and the audit
events with their hashes. The evidence page and `GET /api/v1/tickets/{id}/evidence`
both render this one document; the admin's ticket page reads the same rows
(ticket_story) with the host's current readings."""

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from governance.audit.verifier import evidence_sections
from governance.exports.records import proven_records
from governance.models import ApprovalRequest, AuditEvent, Decision
from governance.rules.labels import event_label, outcome_label
from remediation.models import Alert, Execution, Ticket
from scoring.choices import Severity
from scoring.models import MetricSample

OPENING_SAMPLES = 20


@dataclass(frozen=True)
class TicketRows:
    """Everything recorded about one ticket, each in the order it happened."""

    samples: QuerySet[MetricSample]  # the first OPENING_SAMPLES that showed the problem
    decisions: QuerySet[Decision]
    requests: QuerySet[ApprovalRequest]  # annotated with approve_count
    executions: QuerySet[Execution]
    alerts: QuerySet[Alert]
    events: QuerySet[AuditEvent]


def ticket_rows(ticket: Ticket) -> TicketRows:
    return TicketRows(
        samples=ticket.samples.order_by("taken_at")[:OPENING_SAMPLES],
        decisions=ticket.decisions.select_related(
            "policy", "runbook", "model_version", "sample"
        ).order_by("created_at"),
        requests=ticket.approval_requests.select_related("runbook")
        .prefetch_related("approvals__approver")
        .annotate(approve_count=Count("approvals", filter=Q(approvals__verdict="approve")))
        .order_by("created_at"),
        executions=ticket.executions.select_related(
            "runbook", "requested_by", "handoff_target"
        ).order_by("created_at"),
        alerts=ticket.alerts.order_by("first_received_at", "pk"),
        events=AuditEvent.objects.filter(ticket_id=ticket.ticket_id).order_by("sequence"),
    )


def ticket_story(ticket: Ticket) -> dict[str, Any]:
    """The admin ticket page's rows: the evidence's, and `readings`: the host's newest
    sample next to the one the decision in force was made on, when they differ."""
    rows = ticket_rows(ticket)
    decisions = list(rows.decisions)
    current = MetricSample.objects.filter(host_id=ticket.host_id).order_by("-taken_at").first()
    decided = decisions[-1].sample if decisions else None
    readings = [("Now", current)] if current else []
    if decided is not None and decided != current:
        readings.append(("Decided on", decided))
    return {
        "decisions": decisions[::-1],  # the one in force first
        "requests": list(rows.requests),
        "executions": list(rows.executions),
        "events": list(rows.events),
        "readings": readings,
    }


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def ticket_evidence(ticket: Ticket) -> dict[str, Any]:
    """The evidence document of `ticket` (plain JSON types only), with its audit proof: the
    ticket's audit records with their inclusion proofs to a checkpoint Warden signs now, and
    a statement Warden signs of them and of a digest of every other section, so the offline
    verifier (governance/audit/verifier.py) proves the document without Warden."""
    rows = ticket_rows(ticket)
    records, statement = proven_records(rows.events, {"ticket": ticket.ticket_id})
    document = {
        "ticket": ticket_section(ticket),
        "opening_samples": [sample_entry(s) for s in rows.samples],
        "decisions": [decision_entry(d) for d in rows.decisions],
        "approvals": [approval_entry(r) for r in rows.requests],
        "executions": [execution_entry(e) for e in rows.executions],
        "alerts": [alert_entry(a) for a in rows.alerts],
        "audit_events": [audit_entry(record) for record in records],
    }
    proof = statement.signed(evidence_sections(document))
    document["audit_proof"] = {**proof, "records": records}
    return document


def ticket_section(ticket: Ticket) -> dict[str, Any]:
    """What the ticket is: its problem, where, how it stands and the escalation facts."""
    return {
        "ticket_id": ticket.ticket_id,
        "title": ticket.title,
        "host": ticket.host.name if ticket.host_id else None,
        "category": ticket.category,
        "source": ticket.get_source_display(),
        "status": ticket.get_status_display(),
        "severity": Severity(ticket.severity).label,
        "occurrences": ticket.occurrence_count,
        "opened_at": _when(ticket.opened_at),
        "closed_at": _when(ticket.resolved_at),
        "resolution": ticket.resolution,
        # What the text triage suggested ({} for a ticket from metrics or an alert).
        "triage": dict(ticket.triage),
        "escalation_facts": {
            "affects_billing": ticket.affects_billing,
            "data_integrity": ticket.data_integrity,
            "customer_impact_minutes": ticket.customer_impact_minutes,
            "security_severity": ticket.security_severity,
        },
    }


def sample_entry(s: MetricSample) -> dict[str, Any]:
    """One of the samples that showed the problem, with the model's verdict on it."""
    return {
        "taken_at": _when(s.taken_at),
        "disk_usage": s.disk_usage,
        "memory_usage": s.memory_usage,
        "cpu_usage": s.cpu_usage,
        "dns_latency_ms": s.dns_latency_ms,
        "firewall_change_requested": s.firewall_change_requested,
        "severity": Severity(s.severity).label,
        "confidence": round(s.confidence, 4),
        "explanation": s.explanation[:3],
    }


def decision_entry(d: Decision) -> dict[str, Any]:
    """One decision: its outcome, what it was made on, and why."""
    return {
        "at": _when(d.created_at),
        "outcome": d.outcome,
        "outcome_label": outcome_label(d.outcome),
        "model_outcome": d.model_outcome,
        "model_statement": d.model_statement(),
        "confidence": round(d.confidence, 4),
        "probabilities": [round(p, 4) for p in d.probabilities],
        "allowed": d.allowed,
        "shadow": d.shadow,
        "policy": d.policy.name if d.policy else None,
        "policy_version": d.policy_version,
        "model_version": d.model_version.version if d.model_version else None,
        "runbook": d.runbook.name if d.runbook else None,
        "runbook_version": d.runbook_version,
        "action": d.action,
        "commands": d.commands,
        "argv": d.argv,
        "rollback_argv": d.rollback_argv,
        "argv_digest": d.argv_digest,
        "risk_level": d.risk_level,
        "required_approvals": d.required_approvals,
        "reasons": d.reasons,
        "safety_checks": d.safety_checks,
        "reliability": d.reliability,
    }


def approval_entry(r: ApprovalRequest) -> dict[str, Any]:
    """One approval request and each person's verdict on it (`r` has approve_count)."""
    return {
        "requested_at": _when(r.created_at),
        "runbook": r.runbook.name,
        "runbook_version": r.runbook_version,
        "argv_digest": r.argv_digest,
        "status": r.status,
        "status_label": r.get_status_display(),
        "required": r.required_approvals,
        "approved": r.approve_count,
        "expires_at": _when(r.expires_at),
        "decided_at": _when(r.decided_at),
        "void_reason": r.void_reason,
        "verdicts": [
            {
                "by": a.approver.get_username(),
                "verdict": a.verdict,
                "at": _when(a.created_at),
                "note": a.comment,
            }
            for a in r.approvals.all()
        ],
    }


def execution_entry(e: Execution) -> dict[str, Any]:
    """One execution: what ran where, what it said, its verification and rollback."""
    return {
        "id": e.pk,
        "runbook": e.runbook.name,
        "runbook_version": e.runbook_version,
        "action": e.action or e.runbook.action,
        "commands": e.commands,
        "argv": e.argv,
        "argv_digest": e.argv_digest,
        "exit_code": e.exit_code,
        "state": e.state,
        "state_label": e.get_state_display(),
        "requested_by": e.requested_by.get_username() if e.requested_by else "system",
        "run_by": e.handoff_target.name if e.handoff_target else "agent",
        "remote_reference": e.remote_reference,
        "started_at": _when(e.started_at),
        "finished_at": _when(e.finished_at),
        "output": e.output,
        "verification_samples": e.verify_samples_seen,
        "rollback_action": e.rollback_action,
        "rollback_output": e.rollback_output,
        "cancel_reason": e.cancel_reason,
    }


def alert_entry(a: Alert) -> dict[str, Any]:
    """One alert a monitoring system sent about the ticket's problem."""
    return {
        "source": a.get_source_display(),
        "name": a.name,
        "fingerprint": a.fingerprint,
        "status": a.status,
        "starts_at": _when(a.starts_at),
        "ends_at": _when(a.ends_at),
        "received": a.received_count,
        "first_received_at": _when(a.first_received_at),
        "last_received_at": _when(a.last_received_at),
        "labels": a.labels,
        "link": a.link,
    }


def audit_entry(record: dict[str, Any]) -> dict[str, Any]:
    """One audit event of the ticket (an exported record), with its hash in the chain."""
    return {
        "sequence": record["sequence"],
        "at": record["created_at"],
        "actor": record["actor"],
        "action": record["action"],
        "label": event_label(record["action"]),
        "summary": record["summary"],
        "hash": record["hash"],
    }
