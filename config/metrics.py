"""Prometheus metrics at /metrics, read from the database on each scrape.

Reading the database (not per-process counters) gives the same answer from
every web replica, with no multiprocess registry to share.
"""

import hmac

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from governance.models import ApprovalRequest, ApprovalStatus, AuditChainHead, Decision
from governance.switches import active_pauses
from remediation.models import Execution, Ticket
from scoring.monitoring import LEVEL_RANK, serving_drift


class WardenCollector:
    def collect(self):
        tickets = GaugeMetricFamily("warden_tickets", "Tickets by status", labels=["status"])
        for row in Ticket.objects.values("status").annotate(n=Count("id")):
            tickets.add_metric([row["status"]], row["n"])
        yield tickets

        executions = GaugeMetricFamily("warden_executions", "Executions by state", labels=["state"])
        for row in Execution.objects.values("state").annotate(n=Count("id")):
            executions.add_metric([row["state"]], row["n"])
        yield executions

        decisions = GaugeMetricFamily(
            "warden_decisions", "Decisions by outcome", labels=["outcome"]
        )
        for row in Decision.objects.values("outcome").annotate(n=Count("id")):
            decisions.add_metric([row["outcome"]], row["n"])
        yield decisions

        pending = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING).count()
        yield GaugeMetricFamily(
            "warden_approvals_pending", "Approval requests waiting for people", value=pending
        )
        yield GaugeMetricFamily(
            "warden_pauses_active",
            "Pauses holding automation",
            value=active_pauses(timezone.now()).count(),
        )

        # The audit chain's head, so a copy exists outside the database (governance/audit.py);
        # `manage.py verify_audit --expect SEQUENCE:HASH` checks the log still contains it.
        head = AuditChainHead.objects.get(pk=1)
        yield GaugeMetricFamily(
            "warden_audit_head_sequence", "Sequence of the audit chain's head", value=head.sequence
        )
        head_info = GaugeMetricFamily(
            "warden_audit_head", "The audit chain's head, its hash as a label", labels=["hash"]
        )
        head_info.add_metric([head.hash], head.sequence)
        yield head_info

        drift = serving_drift(timezone.now())
        psi = GaugeMetricFamily(
            "warden_model_drift_psi",
            "Population stability index of the last day's samples, per feature",
            labels=["version", "feature"],
        )
        excess = GaugeMetricFamily(
            "warden_model_drift_psi_excess",
            "PSI beyond what sampling noise alone reaches, per feature (alert on this)",
            labels=["version", "feature"],
        )
        level = GaugeMetricFamily(
            "warden_model_drift_level",
            "Drift of the serving model: 0 ok, 1 watch, 2 out of its depth",
            labels=["version"],
        )
        if drift is not None:
            for feature, value in drift.psi.items():
                psi.add_metric([str(drift.version), feature], value)
            for feature, value in drift.excess.items():
                excess.add_metric([str(drift.version), feature], value)
            # Absent with too few samples: no value rather than a reassuring 0.
            if drift.level in LEVEL_RANK:
                level.add_metric([str(drift.version)], LEVEL_RANK[drift.level])
        yield psi
        yield excess
        yield level


def metrics(request: HttpRequest) -> HttpResponse:
    """For a scraper with WARDEN_METRICS_TOKEN as its bearer token, or a staff session."""
    token = settings.WARDEN_METRICS_TOKEN
    bearer = request.headers.get("Authorization", "")
    if not (token and hmac.compare_digest(bearer, f"Bearer {token}")):
        return _staff_metrics(request)
    return _render()


@staff_member_required
def _staff_metrics(request: HttpRequest) -> HttpResponse:
    return _render()


def _render() -> HttpResponse:
    registry = CollectorRegistry()
    registry.register(WardenCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
