"""Track records: what a policy or pattern did since it reached its level, read into the
values governance.rules.autonomy decides from (fixes, how they ended, feedback given),
and who stands behind them (backing): the people and services whose verdicts and
approvals they rest on, and how the fixes were verified.

Read by the proposals (one step up), the demotions (back to L1) and the accepting of a
proposal (governance.promotions.actions).
"""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Avg, Count, FloatField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from feedback.models import Feedback, FeedbackType, Pattern
from feedback.verdicts import weight_of
from governance.audit.permissions import SERVICE_ROLES
from governance.decisions.stats import category_verdicts, positive_share
from governance.models import Approval, PatternAutonomy, Policy, Verdict
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


def track_record(
    executions: QuerySet[Execution], since: datetime | None, *, service_weight: float = 0.0
) -> autonomy.TrackRecord:
    """The fixes among `executions` decided since `since` that have ended, and the verdicts
    given on their tickets since then: each person's current one per ticket, a service's
    weighed by `service_weight` (the policy's; three aggregate queries)."""
    ended = ended_fixes(executions, since)
    counts = ended.aggregate(
        fixes=Count("pk"),
        succeeded=Count("pk", filter=Q(state=ExecutionState.SUCCEEDED)),
        reliability=Avg(
            Cast(KeyTextTransform("overall_score", "decision__reliability"), FloatField())
        ),
    )
    positive = Q(feedback_type=FeedbackType.POSITIVE)
    said = _verdicts_on(ended, since).aggregate(
        people=Count("pk", filter=Q(from_service=False)),
        people_positive=Count("pk", filter=Q(from_service=False) & positive),
        services=Count("pk", filter=Q(from_service=True)),
        services_positive=Count("pk", filter=Q(from_service=True) & positive),
    )
    weight = weight_of(True, service_weight)
    return autonomy.TrackRecord(
        since=since,
        fixes=counts["fixes"],
        succeeded=counts["succeeded"],
        feedback=_weighed(said["people"], weight * said["services"]),
        positive=_weighed(said["people_positive"], weight * said["services_positive"]),
        reliability=counts["reliability"],
    )


def _weighed(people: int, services: float) -> int | float:
    """People's verdicts plus the services' weighed ones: a whole number while it is one,
    so the numbers read "20 of 20" as before a policy weighs services."""
    total = people + services
    return int(total) if float(total).is_integer() else round(total, 2)


def ended_fixes(executions: QuerySet[Execution], since: datetime | None) -> QuerySet[Execution]:
    """The fixes among `executions` decided since `since` that have ended."""
    if since is not None:
        executions = executions.filter(created_at__gte=since)
    return executions.filter(
        Q(state=ExecutionState.SUCCEEDED) | Q(state__in=FAILED_ENDINGS) | STOPPED_RUNNING
    )


def _verdicts_on(ended: QuerySet[Execution], since: datetime | None) -> QuerySet[Feedback]:
    """The current verdicts on the tickets of `ended`, given since `since`."""
    feedback = Feedback.objects.filter(
        ticket__in=ended.values("ticket"), superseded_at__isnull=True
    )
    return feedback.filter(created_at__gte=since) if since is not None else feedback


def backing(executions: QuerySet[Execution], since: datetime | None) -> dict[str, Any]:
    """Who stands behind a track record's numbers, for a proposal's page.

    The distinct people and service accounts whose current verdicts (and approvals) the
    fixes since `since` rest on, how the successes were verified (the host's own readings,
    an alert's resolution, or otherwise), and `warnings`: what a supervisor should know
    before trusting it, said plainly (positive feedback from fewer than
    WARDEN_PROPOSAL_MIN_PEOPLE people, or only from services; successes an alert verified).
    """
    ended = ended_fixes(executions, since)
    accounts: dict[str, dict[str, Any]] = {}

    def account(name: str | None) -> dict[str, Any]:
        name = name or "(a deleted account)"
        return accounts.setdefault(
            name,
            {"username": name, "service": False, "feedback": 0, "positive": 0, "approvals": 0},
        )

    verdicts = _verdicts_on(ended, since).values_list(
        "submitted_by__username", "from_service", "feedback_type"
    )
    for name, service, kind in verdicts.iterator():
        row = account(name)
        row["service"] = row["service"] or service
        row["feedback"] += 1
        row["positive"] += kind == FeedbackType.POSITIVE
    approvals = Approval.objects.filter(
        request__in=ended.values("approval_request"), verdict=Verdict.APPROVE
    ).values_list("approver__username", flat=True)
    for name in approvals.iterator():
        account(name)["approvals"] += 1
    services = set(
        get_user_model()
        .objects.filter(username__in=list(accounts), groups__name__in=SERVICE_ROLES)
        .values_list("username", flat=True)
    )
    for name in services:
        accounts[name]["service"] = True
    rows = sorted(accounts.values(), key=lambda row: (row["service"], row["username"]))
    verified = _how_verified(ended.filter(state=ExecutionState.SUCCEEDED))
    return {
        "accounts": rows,
        "people": sum(1 for row in rows if not row["service"]),
        "services": sum(1 for row in rows if row["service"]),
        "positive_people": sum(1 for row in rows if row["positive"] and not row["service"]),
        "positive_services": sum(1 for row in rows if row["positive"] and row["service"]),
        "verified": verified,
        "warnings": _warnings(rows, verified),
    }


def _how_verified(succeeded: QuerySet[Execution]) -> dict[str, int]:
    """How many successes each kind of evidence verified: the host's own readings, an
    alert's resolution, or something else (the deadline, a row from before it was kept)."""
    counts = {"readings": 0, "alert": 0, "other": 0}
    for verified_by in succeeded.values_list("verified_by", flat=True).iterator():
        counts[verified_by if verified_by in ("readings", "alert") else "other"] += 1
    return counts


def _warnings(rows: list[dict[str, Any]], verified: dict[str, int]) -> list[str]:
    least = settings.WARDEN_PROPOSAL_MIN_PEOPLE
    people = [row["username"] for row in rows if row["positive"] and not row["service"]]
    services = [row["username"] for row in rows if row["positive"] and row["service"]]
    warnings = []
    if services and not people:
        warnings.append(
            f"Its positive feedback comes only from service accounts ({', '.join(services)}): "
            "no person said these fixes worked."
        )
    elif len(people) < least:
        who = f" ({', '.join(people)})" if people else ""
        warnings.append(
            f"Its positive feedback comes from {len(people)} "
            f"{'person' if len(people) == 1 else 'people'}{who}; "
            f"at least {least} distinct people are expected (WARDEN_PROPOSAL_MIN_PEOPLE)."
        )
    by_alert = verified["alert"] + verified["other"]
    if by_alert:
        total = by_alert + verified["readings"]
        warnings.append(
            f"{by_alert} of its {total} verified fixes were not verified by the host's own "
            "readings (an alert's resolution or otherwise)."
        )
    return warnings


def target_version(target: Policy | PatternAutonomy | None) -> int | None:
    """The newest version (history id) of a policy or a pattern's level row, or None: what
    a proposal was computed on, so accepting can tell whether it changed since."""
    if target is None:
        return None
    return target.history.order_by("-history_id").values_list("history_id", flat=True).first()


def pattern_name(pattern: Pattern) -> str:
    return f"pattern {pattern.category}: {', '.join(pattern.key_terms) or 'no key terms'}"


def pattern_rung(policy: Policy | None, row: PatternAutonomy | None) -> autonomy.Rung:
    """How far a pattern may act: its policy's level, capped by its own if it was lowered."""
    level = policy.autonomy_level if policy is not None else autonomy.L3
    if row is not None:
        level = min(level, row.autonomy_level)
    return autonomy.Rung(level)


def category_feedback(
    category: str, now: datetime, service_weight: float | None = None
) -> autonomy.FeedbackShare:
    """The category's positive share as the engine reads it (governance.decisions.stats):
    each person's current verdict per ticket in the feedback window, a service's weighed
    by `service_weight` (None: the category's enabled policy's)."""
    if service_weight is None:
        policy = Policy.objects.filter(category=category, enabled=True).first()
        service_weight = policy.service_feedback_weight if policy is not None else 0.0
    given, positive = positive_share(category_verdicts(category, now, service_weight))
    return autonomy.FeedbackShare(given, positive)


def pattern_feedback(pattern: Pattern) -> autonomy.FeedbackShare:
    given = pattern.positive_count + pattern.negative_count + pattern.neutral_count
    return autonomy.FeedbackShare(given, pattern.positive_count)
