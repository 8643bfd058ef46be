"""Prometheus metrics at /metrics, read from the database on each scrape.

Reading the database (not per-process counters) gives the same answer from
every web replica and worker, with no multiprocess registry to share. The
counters are counts of rows that are never deleted (executions, feedback, the
append-only audit log), so they only grow. deploy/prometheus/warden-rules.yml
alerts on these names and deploy/grafana/warden-dashboard.json draws them.
"""

import hmac
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Avg, BigIntegerField, Count, FloatField, Min, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from feedback.models import Feedback, FeedbackType
from governance.models import (
    ApprovalRequest,
    ApprovalStatus,
    AuditChainHead,
    AuditEvent,
    Decision,
)
from governance.pauses.state import active_pauses
from remediation.choices import Category, ExecutionState
from remediation.models import Execution, Ticket
from scoring.monitoring import LEVEL_RANK, serving_drift

# The reliability gauge averages the decisions of this last stretch of time.
RELIABILITY_WINDOW = timedelta(hours=24)
# Upper bounds, in seconds, of the pending approvals' age buckets: 5 minutes, 1 hour, 1 day.
PENDING_AGE_BUCKETS = (300, 3600, 86400)

# The audit events that mark an execution's outcome. The log is append-only, so an
# execution counted once stays counted, even when a person later rolls a success back
# (it then counts as a failure too) or cancels a rollback. Failed, as the patterns count
# it (remediation.executions): the run failed or was not verified, it was cancelled while
# running or verifying, or it was rolled back.
SUCCEEDED_EVENTS = Q(action=f"execution.{ExecutionState.SUCCEEDED.value}")
FAILED_EVENTS = Q(
    action__in=[
        f"execution.{ExecutionState.FAILED.value}",
        f"execution.{ExecutionState.ROLLBACK_PENDING.value}",
    ]
) | Q(
    action=f"execution.{ExecutionState.CANCELLED.value}",
    data__was__in=[ExecutionState.RUNNING.value, ExecutionState.VERIFYING.value],
) & Q(data__ran__isnull=True)  # cancelled with "ran": false never started


class WardenCollector:
    def collect(self):
        now = timezone.now()
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

        yield from _pending_approvals(now)
        yield GaugeMetricFamily(
            "warden_pauses_active",
            "Pauses holding automation",
            value=active_pauses(now).count(),
        )
        yield from _reliability(now)
        yield from _automatic_remediations()
        yield _feedback()

        # The audit chain's head, so a copy exists outside the database (governance/audit/log.py);
        # `manage.py verify_audit --expect SEQUENCE:HASH` checks the log still contains it.
        # A missing head row reads as #0, which no published head matches (verify_audit
        # names it BROKEN); the scrape itself still answers.
        head = AuditChainHead.objects.filter(pk=1).first() or AuditChainHead(sequence=0)
        yield GaugeMetricFamily(
            "warden_audit_head_sequence", "Sequence of the audit chain's head", value=head.sequence
        )
        head_info = GaugeMetricFamily(
            "warden_audit_head", "The audit chain's head, its hash as a label", labels=["hash"]
        )
        head_info.add_metric([head.hash], head.sequence)
        yield head_info

        drift = serving_drift(now)
        psi = GaugeMetricFamily(
            "warden_model_drift_psi",
            "Population stability index of the last day's samples, per feature",
            labels=["version", "feature"],
        )
        excess = GaugeMetricFamily(
            "warden_model_drift_psi_excess",
            "PSI of the samples moved where training data was thin, beyond sampling noise, "
            "per feature (alert on this)",
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


def _pending_approvals(now: datetime):
    """How many approval requests wait for people, by how long they have waited (one query)."""
    waited = {
        f"within_{bound}": Count("id", filter=Q(created_at__gte=now - timedelta(seconds=bound)))
        for bound in PENDING_AGE_BUCKETS
    }
    pending = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING).aggregate(
        total=Count("id"), oldest=Min("created_at"), **waited
    )
    yield GaugeMetricFamily(
        "warden_approvals_pending", "Approval requests waiting for people", value=pending["total"]
    )
    by_age = GaugeMetricFamily(
        "warden_approvals_pending_by_age",
        "Approval requests waiting for people that have waited at most le seconds "
        "(cumulative, like a histogram's buckets)",
        labels=["le"],
    )
    for bound in PENDING_AGE_BUCKETS:
        by_age.add_metric([str(bound)], pending[f"within_{bound}"])
    by_age.add_metric(["+Inf"], pending["total"])
    yield by_age
    oldest = pending["oldest"]
    yield GaugeMetricFamily(
        "warden_approvals_oldest_pending_seconds",
        "How long the oldest approval request still waiting has waited, in seconds "
        "(0 when none waits)",
        value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
    )


def _reliability(now: datetime):
    """The average reliability score (0-100) of the last day's decisions, per category."""
    rows = (
        Decision.objects.filter(
            created_at__gte=now - RELIABILITY_WINDOW, reliability__has_key="overall_score"
        )
        .values("ticket__category")
        .annotate(
            score=Avg(Cast(KT("reliability__overall_score"), FloatField())),
            decisions=Count("id"),
        )
        .order_by("ticket__category")
    )
    score = GaugeMetricFamily(
        "warden_reliability_score",
        "Average reliability score (0-100) of the decisions of the last 24 hours, by ticket "
        "category; absent for a category with no decision in that time",
        labels=["category"],
    )
    decisions = GaugeMetricFamily(
        "warden_reliability_decisions",
        "Decisions of the last 24 hours that warden_reliability_score averages, by category",
        labels=["category"],
    )
    for row in rows:
        score.add_metric([row["ticket__category"]], round(row["score"], 2))
        decisions.add_metric([row["ticket__category"]], row["decisions"])
    yield score
    yield decisions


def _reached(events: Q):
    """Ids of the executions with an audit event matching `events`."""
    return (
        AuditEvent.objects.filter(events, object_type=Execution.__name__)
        .annotate(execution_id=Cast("object_id", BigIntegerField()))
        .values("execution_id")
    )


def _automatic_remediations():
    """Automatic executions (no approval request behind them) and their outcomes, per
    ticket category, in one query. Every category is shown, 0 included, so that rate()
    counts a category's first attempt."""
    rows = (
        Execution.objects.filter(approval_request__isnull=True)
        .values("ticket__category")
        .annotate(
            attempts=Count("id"),
            successes=Count("id", filter=Q(pk__in=_reached(SUCCEEDED_EVENTS))),
            failures=Count("id", filter=Q(pk__in=_reached(FAILED_EVENTS))),
        )
        .order_by("ticket__category")
    )
    counts = {category: (0, 0, 0) for category in Category.values}
    for row in rows:
        counts[row["ticket__category"]] = (row["attempts"], row["successes"], row["failures"])
    families = (
        CounterMetricFamily(
            "warden_auto_remediation_attempts",
            "Automatic remediations started (executions no person approved), by ticket category",
            labels=["category"],
        ),
        CounterMetricFamily(
            "warden_auto_remediation_successes",
            "Automatic remediations verified healthy by fresh metrics, by ticket category",
            labels=["category"],
        ),
        CounterMetricFamily(
            "warden_auto_remediation_failures",
            "Automatic remediations that failed, were cancelled while running or were rolled back, "
            "by ticket category",
            labels=["category"],
        ),
    )
    for category, values in counts.items():
        for family, value in zip(families, values, strict=True):
            family.add_metric([category], value)
    yield from families


def _feedback() -> CounterMetricFamily:
    """Feedback people gave, by ticket category and type (one query, zeros included)."""
    counts = {(category, kind): 0 for category in Category.values for kind in FeedbackType.values}
    for row in Feedback.objects.values("ticket__category", "feedback_type").annotate(n=Count("id")):
        counts[(row["ticket__category"], row["feedback_type"])] = row["n"]
    family = CounterMetricFamily(
        "warden_feedback",
        "Feedback people gave on tickets, by ticket category and type "
        "(positive, negative, neutral)",
        labels=["category", "type"],
    )
    for (category, kind), n in counts.items():
        family.add_metric([category, kind], n)
    return family


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
