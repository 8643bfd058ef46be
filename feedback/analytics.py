"""The seed's key metrics over a period: reliability, resolution, automatic remediation,
approvals, feedback and patterns (GET /api/v1/stats/...).

Read-only. A rate is None when there is nothing to take it over (no tickets, no
finished executions), rather than a 0 that would read as a failure.

Which rows a period holds: tickets opened in it (and the decisions and executions of
those tickets), approval requests and feedback created in it. Patterns are counted as
they stand now.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean
from typing import Any

from django.db.models import Avg, Count, OuterRef, Q, Subquery, Sum

from feedback.models import Feedback, FeedbackType, Pattern
from feedback.patterns import is_eligible
from governance.models import ApprovalRequest, ApprovalStatus, Decision
from remediation.choices import ExecutionState, TicketStatus
from remediation.models import Execution, Ticket

# An automatic execution that ran to an end: its outcome counts in the success rate.
FINISHED = (
    ExecutionState.SUCCEEDED,
    ExecutionState.FAILED,
    ExecutionState.ROLLED_BACK,
    ExecutionState.ROLLBACK_FAILED,
)
CONFIDENCE_LEVELS = ("very_high", "high", "medium", "low")


@dataclass(frozen=True)
class Period:
    days: int
    since: datetime
    until: datetime

    @classmethod
    def last(cls, days: int, now: datetime) -> "Period":
        return cls(days, now - timedelta(days=days), now)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 2) if values else None


def _tickets(period: Period) -> Any:
    return Ticket.objects.filter(opened_at__gte=period.since, opened_at__lte=period.until)


def reliability_stats(period: Period) -> dict[str, Any]:
    """Reliability and confidence of the period's tickets (as their latest decision scored
    them), how many were resolved, by category, and what people's feedback said."""
    tickets = _tickets(period)
    latest = Decision.objects.filter(ticket=OuterRef("pk")).order_by("-created_at").values("pk")
    decided = Decision.objects.filter(
        pk__in=tickets.annotate(latest=Subquery(latest[:1])).values("latest")
    ).values_list("ticket__category", "confidence", "reliability")
    scores: dict[str, list[float]] = defaultdict(list)
    confidences: list[float] = []
    levels: Counter[str] = Counter()
    for category, confidence, reliability in decided:
        confidences.append(confidence)
        if reliability:
            scores[category].append(reliability["overall_score"])
            levels[reliability["confidence_level"]] += 1
    by_category = {}
    counts = tickets.values("category").annotate(
        total=Count("pk"), resolved=Count("pk", filter=Q(status=TicketStatus.RESOLVED))
    )
    for row in counts.order_by("category"):
        by_category[row["category"]] = {
            "tickets": row["total"],
            "resolved": row["resolved"],
            "resolution_rate": rate(row["resolved"], row["total"]),
            "avg_reliability_score": _mean(scores.get(row["category"], [])),
        }
    total = sum(row["tickets"] for row in by_category.values())
    resolved = sum(row["resolved"] for row in by_category.values())
    return {
        **_period(period),
        "total_tickets": total,
        "resolved_tickets": resolved,
        "resolution_rate": rate(resolved, total),
        "avg_reliability_score": _mean([s for values in scores.values() for s in values]),
        "avg_confidence_score": _mean(confidences),
        "confidence_levels": {level: levels[level] for level in CONFIDENCE_LEVELS},
        "by_category": by_category,
        "feedback": feedback_stats(period),
    }


def feedback_stats(period: Period) -> dict[str, Any]:
    """The current verdicts given in the period: one per person per ticket (a replaced one
    is not counted twice), with how many came from service accounts."""
    given = Feedback.objects.filter(
        created_at__gte=period.since, created_at__lte=period.until, superseded_at__isnull=True
    )
    kinds = dict(given.values_list("feedback_type").annotate(n=Count("pk")))
    total = sum(kinds.values())
    average = given.aggregate(avg=Avg("rating"))["avg"]
    return {
        "total": total,
        "positive": kinds.get(FeedbackType.POSITIVE, 0),
        "negative": kinds.get(FeedbackType.NEGATIVE, 0),
        "neutral": kinds.get(FeedbackType.NEUTRAL, 0),
        "positive_feedback_rate": rate(kinds.get(FeedbackType.POSITIVE, 0), total),
        "negative_feedback_rate": rate(kinds.get(FeedbackType.NEGATIVE, 0), total),
        "avg_rating": round(average, 2) if average is not None else None,
        "from_services": given.filter(from_service=True).count(),
    }


def auto_remediation_stats(period: Period) -> dict[str, Any]:
    """How much of the period's work ran by itself and how it went, how much waited for
    people and what they said, and which patterns have earned automation."""
    tickets = _tickets(period)
    enabled = tickets.filter(enable_auto_remediation=True)
    automatic = Execution.objects.filter(ticket__in=tickets, approval_request__isnull=True)
    executed = (
        enabled.filter(
            executions__approval_request__isnull=True, executions__started_at__isnull=False
        )
        .distinct()
        .count()
    )
    states = dict(automatic.values_list("state").annotate(n=Count("pk")))
    finished = sum(states.get(state, 0) for state in FINISHED)
    succeeded = states.get(ExecutionState.SUCCEEDED, 0)
    enabled_count = enabled.count()
    # Decisions that let a runbook run (now or once approved), and how many of them
    # waited for a person: the seed's "approval rate".
    runnable = Decision.objects.filter(ticket__in=tickets, allowed=True, shadow=False)
    needing_people = runnable.filter(requires_approval=True).count()
    runnable_count = runnable.count()
    requests = ApprovalRequest.objects.filter(
        created_at__gte=period.since, created_at__lte=period.until
    )
    request_counts = dict(requests.values_list("status").annotate(n=Count("pk")))
    return {
        **_period(period),
        "total_tickets": tickets.count(),
        "auto_remediation_enabled_tickets": enabled_count,
        "auto_remediated_tickets": executed,
        "execution_rate": rate(executed, enabled_count),
        "automatic_executions": sum(states.values()),
        "automatic_executions_finished": finished,
        "automatic_executions_succeeded": succeeded,
        "success_rate": rate(succeeded, finished),
        "decisions_allowing_a_runbook": runnable_count,
        "decisions_requiring_approval": needing_people,
        "approval_rate": rate(needing_people, runnable_count),
        "approval_requests": {
            status: request_counts.get(status, 0) for status in ApprovalStatus.values
        },
        "patterns": pattern_stats(),
    }


def pattern_stats() -> dict[str, Any]:
    patterns = list(Pattern.objects.all())
    totals = Pattern.objects.aggregate(
        successes=Sum("success_count"), failures=Sum("failure_count")
    )
    successes, failures = totals["successes"] or 0, totals["failures"] or 0
    return {
        "total": len(patterns),
        "eligible_patterns": sum(
            1 for p in patterns if p.eligible_for_auto_remediation and is_eligible(p)
        ),
        "pattern_success_rate": rate(successes, successes + failures),
    }


def _period(period: Period) -> dict[str, Any]:
    return {"days": period.days, "since": period.since, "until": period.until}
