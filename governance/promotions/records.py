"""Track records: what a policy or pattern did since it reached its level, read into the
values governance.rules.autonomy decides from (fixes, how they ended, feedback given).

Read by the proposals (one step up), the demotions (back to L1) and the accepting of a
proposal (governance.promotions.actions).
"""

from datetime import datetime

from django.db.models import Avg, Count, FloatField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from feedback.models import Feedback, FeedbackType, Pattern
from governance.decisions.stats import HISTORY_WINDOW, RECENT_FEEDBACK_LIMIT
from governance.models import PatternAutonomy, Policy
from governance.rules import autonomy
from remediation.choices import ExecutionState
from remediation.models import Execution

# How a fix that ran ended badly: failed, rolled back (or rolling back), or its rollback failed.
FAILED_ENDINGS = (
    ExecutionState.FAILED,
    ExecutionState.ROLLBACK_PENDING,
    ExecutionState.ROLLING_BACK,
    ExecutionState.ROLLED_BACK,
    ExecutionState.ROLLBACK_FAILED,
)
# Stopped while running: it ran, and nothing verified that it worked.
STOPPED_RUNNING = Q(state=ExecutionState.CANCELLED, started_at__isnull=False)


def policy_rung(policy: Policy) -> autonomy.Rung:
    return autonomy.Rung(policy.autonomy_level, policy.requires_approval)


def level_since(policy: Policy) -> datetime | None:
    """When `policy` reached its level and approval rule: the oldest of its newest history
    versions that all have them (None without history)."""
    since = None
    versions = policy.history.order_by("-history_id").values_list(
        "autonomy_level", "requires_approval", "history_date"
    )
    for level, approval, at in versions.iterator():
        if (level, approval) != (policy.autonomy_level, policy.requires_approval):
            break
        since = at
    return since


def ended_badly(executions: QuerySet[Execution]) -> QuerySet[Execution]:
    return executions.filter(Q(state__in=FAILED_ENDINGS) | STOPPED_RUNNING)


def track_record(executions: QuerySet[Execution], since: datetime | None) -> autonomy.TrackRecord:
    """The fixes among `executions` decided since `since` that have ended, and the feedback
    given on their tickets since then (three aggregate queries)."""
    if since is not None:
        executions = executions.filter(created_at__gte=since)
    ended = executions.filter(
        Q(state=ExecutionState.SUCCEEDED) | Q(state__in=FAILED_ENDINGS) | STOPPED_RUNNING
    )
    counts = ended.aggregate(
        fixes=Count("pk"),
        succeeded=Count("pk", filter=Q(state=ExecutionState.SUCCEEDED)),
        reliability=Avg(
            Cast(KeyTextTransform("overall_score", "decision__reliability"), FloatField())
        ),
    )
    feedback = Feedback.objects.filter(ticket__in=ended.values("ticket"))
    if since is not None:
        feedback = feedback.filter(created_at__gte=since)
    said = feedback.aggregate(
        given=Count("pk"), positive=Count("pk", filter=Q(feedback_type=FeedbackType.POSITIVE))
    )
    return autonomy.TrackRecord(
        since=since,
        fixes=counts["fixes"],
        succeeded=counts["succeeded"],
        feedback=said["given"],
        positive=said["positive"],
        reliability=counts["reliability"],
    )


def pattern_name(pattern: Pattern) -> str:
    return f"pattern {pattern.category}: {', '.join(pattern.key_terms) or 'no key terms'}"


def pattern_rung(policy: Policy | None, row: PatternAutonomy | None) -> autonomy.Rung:
    """How far a pattern may act: its policy's level, capped by its own if it was lowered."""
    level = policy.autonomy_level if policy is not None else autonomy.L3
    if row is not None:
        level = min(level, row.autonomy_level)
    return autonomy.Rung(level)


def category_feedback(category: str, now: datetime) -> autonomy.FeedbackShare:
    """The category's positive share as the engine reads it (governance.decisions.deciding)."""
    recent = list(
        Feedback.objects.filter(
            ticket__category=category, created_at__gte=now - HISTORY_WINDOW, created_at__lte=now
        )
        .order_by("-created_at")
        .values_list("feedback_type", flat=True)[:RECENT_FEEDBACK_LIMIT]
    )
    return autonomy.FeedbackShare(len(recent), recent.count(FeedbackType.POSITIVE))


def pattern_feedback(pattern: Pattern) -> autonomy.FeedbackShare:
    given = pattern.positive_count + pattern.negative_count + pattern.neutral_count
    return autonomy.FeedbackShare(given, pattern.positive_count)
