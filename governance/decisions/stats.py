"""What the database knows that a decision depends on, read at decision time.

The fleet's counts the rate limit and the blast radius bind (read under the fleet-limits
lock), the category's feedback and closed tickets, the ticket's pattern and the level it
was lowered to, and the host's newest readings: governance.rules.facts.Statistics and the
reliability score it gives.
"""

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q

from feedback import patterns
from feedback.models import Feedback
from feedback.verdicts import current_at, weight_of
from governance.decisions.facts import enabled_policy
from governance.models import PatternAutonomy, Policy
from governance.rules.facts import Statistics
from remediation.choices import (
    EXECUTION_ACTIVE_STATES,
    TICKET_OPEN_STATUSES,
    ExecutionState,
    TicketStatus,
)
from remediation.models import Counter, Execution, Host, Ticket
from scoring.models import MetricSample
from scoring.reliability import (
    FeedbackFact,
    ReliabilityBreakdown,
    ReliabilityInputs,
    reliability_score,
)
from scoring.samples import sample_shows_problem

# The Counter row whose lock serialises what counts fleet-wide limits (lock_fleet_limits).
FLEET_LIMITS_LOCK = "fleet-limits"
HISTORY_WINDOW = timedelta(days=180)  # the seed's "last 6 months"


def feedback_window() -> timedelta:
    """How far back people's verdicts count (WARDEN_FEEDBACK_WINDOW_DAYS): all of them in
    the window, one per person per ticket, so a flood of posts pushes none out."""
    return timedelta(days=settings.WARDEN_FEEDBACK_WINDOW_DAYS)


def category_verdicts(
    category: str, now: datetime, service_weight: float
) -> tuple[FeedbackFact, ...]:
    """The category's verdicts that count at `now`: each person's current one per ticket,
    given in the feedback window, a service's weighed by `service_weight` (its policy's)."""
    rows = current_at(
        Feedback.objects.filter(ticket__category=category, created_at__gte=now - feedback_window()),
        now,
    ).values_list(
        "feedback_type",
        "rating",
        "created_at",
        "resolution_accurate",
        "actions_worked",
        "from_service",
    )
    return tuple(
        FeedbackFact(
            kind,
            rating,
            (now - created).total_seconds() / 86400,
            accurate,
            worked,
            weight=weight_of(service, service_weight),
        )
        for kind, rating, created, accurate, worked, service in rows.iterator()
    )


def positive_share(verdicts: tuple[FeedbackFact, ...]) -> tuple[int | float, int | float]:
    """(weight given, weight positive) of `verdicts`: a person's verdict counts 1, and the
    sums stay whole numbers while they are ("3 of 4" as people read it)."""
    given = sum(fact.weight for fact in verdicts)
    positive = sum(fact.weight for fact in verdicts if fact.feedback_type == "positive")
    return _whole(given), _whole(positive)


def _whole(total: float) -> int | float:
    return int(total) if float(total).is_integer() else round(total, 2)


def lock_fleet_limits() -> None:
    """Serialise everything that counts the blast radius and the rate limit, until commit.

    Those limits are fleet-wide counts (hosts under remediation, actions in the last hour):
    two decisions counting at once would both see room for one more. One row lock, taken
    last (after the host's and the execution's), makes each decision and dispatch see the
    executions the others created. A decision takes it only when it would act by itself
    (governance.decisions.deciding), a dispatch always. SQLite's immediate transactions
    serialise anyway.
    """
    list(Counter.objects.select_for_update().filter(name=FLEET_LIMITS_LOCK))


def hosts_in_scope(label: str) -> Any:
    """The hosts a blast-radius limit counts: those carrying `label` (key=value), or all."""
    hosts = Host.objects.filter(enabled=True)
    if label:
        key, _, value = label.partition("=")
        hosts = hosts.filter(**{f"labels__{key}": value})
    return hosts


def has_backup(host: Host) -> bool:
    """Positive evidence only: the backup system labels hosts it has a fresh backup of."""
    return host.labels.get("backup") == "yes"


@dataclass(frozen=True)
class CategoryHistory:
    """What the category's past says, as of a time: the verdicts that count, the closed
    tickets of the last six months, and the learned pattern (what the reliability score
    reads; a decision reads the fleet's counts and the host besides)."""

    feedback: tuple[FeedbackFact, ...]
    positive_feedback_rate: float | None
    category_resolved: int
    category_total: int
    similar_resolved_tickets: int
    pattern: patterns.PatternMatch


def category_history(
    ticket: Ticket,
    policy: Policy | None,
    now: datetime,
    pattern: patterns.PatternMatch | None = None,
) -> CategoryHistory:
    """What the category's history says about `ticket` as of `now`.

    `pattern` is the learned pattern a new ticket matches; without it, the one the
    ticket was counted on (read as it is today).

    History is read as it stood at `now` (feedback given and tickets closed by
    then, never `ticket` itself), so a simulation replaying a past ticket does
    not see its own outcome or anything later.
    """
    category = ticket.category
    since = now - HISTORY_WINDOW
    feedback = category_verdicts(
        category, now, policy.service_feedback_weight if policy is not None else 0.0
    )
    given, positives = positive_share(feedback)
    found = pattern or _counted_pattern(ticket)
    # Closed by `now`: resolved (the success) or closed unresolved (the failure). Open
    # tickets have no outcome yet and would only drag the success rate down. A closed
    # row without a close time is read as closed long ago. One statement for the three.
    recent = Q(opened_at__gte=since)
    resolved = Q(status=TicketStatus.RESOLVED)
    similar = (
        {"similar": Count("pk", filter=resolved & Q(pattern=found.pattern))}
        if found.pattern is not None
        else {}
    )
    history = (
        Ticket.objects.filter(category=category)
        .filter(Q(resolved_at__lte=now) | Q(resolved_at__isnull=True))
        .exclude(status__in=TICKET_OPEN_STATUSES)
        .exclude(pk=ticket.pk)
        .aggregate(
            total=Count("pk", filter=recent),
            resolved=Count("pk", filter=recent & resolved),
            **similar,
        )
    )
    return CategoryHistory(
        feedback=feedback,
        positive_feedback_rate=positives / given if given > 0 else None,
        category_resolved=history["resolved"],
        category_total=history["total"],
        # The seed's step 6: similar means of the same learned pattern; no pattern, none.
        similar_resolved_tickets=history.get("similar", 0),
        pattern=found,
    )


def statistics(
    ticket: Ticket,
    policy: Policy | None,
    now: datetime,
    pattern: patterns.PatternMatch | None = None,
) -> Statistics:
    """What a decision on `ticket` at `now` reads: the category's history
    (category_history, with `pattern`), the fleet's counts and the host's state."""
    history = category_history(ticket, policy, now, pattern)
    found = history.pattern
    return Statistics(
        **asdict(fleet_counts(ticket, policy, now)),
        backup_available=has_backup(ticket.host),
        # The host is reporting: this decision is about the sample it just sent.
        system_healthy=ticket.host.enabled,
        similar_resolved_tickets=history.similar_resolved_tickets,
        positive_feedback_rate=history.positive_feedback_rate,
        feedback=history.feedback,
        category_resolved=history.category_resolved,
        category_total=history.category_total,
        pattern=patterns.facts(found),
        pattern_level=pattern_level(found.pattern.pk if found.pattern else None),
        feedback_formula=settings.WARDEN_FEEDBACK_FORMULA,
    )


@dataclass(frozen=True)
class FleetCounts:
    """The counts the rate limit and the blast radius bind (Statistics' fields of the same
    names): read again under the fleet-limits lock before anything acts by itself."""

    actions_last_hour: int
    hosts_under_remediation: int
    hosts_in_scope: int
    host_in_scope: bool
    host_under_remediation: bool


def fleet_counts(ticket: Ticket, policy: Policy | None, now: datetime) -> FleetCounts:
    """The fleet's counts for a decision on `ticket` at `now`, in two statements."""
    hour_ago = now - timedelta(hours=1)
    active = Q(state__in=EXECUTION_ACTIVE_STATES)
    scope = hosts_in_scope(policy.blast_radius_label if policy else "")
    executions = Execution.objects.filter(active | Q(created_at__gte=hour_ago)).aggregate(
        actions=Count(
            "pk",
            filter=Q(runbook__category=ticket.category, created_at__gte=hour_ago)
            & ~Q(state=ExecutionState.CANCELLED),
        ),
        hosts=Count("host", distinct=True, filter=active & Q(host__in=scope)),
        on_host=Count("pk", filter=active & Q(host_id=ticket.host_id)),
    )
    hosts = scope.aggregate(total=Count("pk"), this=Count("pk", filter=Q(pk=ticket.host_id)))
    return FleetCounts(
        actions_last_hour=executions["actions"],
        hosts_under_remediation=executions["hosts"],
        hosts_in_scope=max(hosts["total"], 1),
        host_in_scope=hosts["this"] > 0,
        host_under_remediation=executions["on_host"] > 0,
    )


def pattern_level(pattern_id: int | None) -> int | None:
    """The level a lowered pattern may act at (PatternAutonomy), or None: its policy's."""
    if pattern_id is None:
        return None
    rows = PatternAutonomy.objects.filter(pattern_id=pattern_id)
    return rows.values_list("autonomy_level", flat=True).first()


def _counted_pattern(ticket: Ticket) -> patterns.PatternMatch:
    if ticket.pattern is None:
        return patterns.PatternMatch(None, 0.0, ())
    similarity = ticket.pattern_similarity if ticket.pattern_similarity is not None else 1.0
    return patterns.PatternMatch(ticket.pattern, similarity, tuple(ticket.pattern.key_terms))


def current_reliability(ticket: Ticket, now: datetime) -> ReliabilityBreakdown | None:
    """The ticket's reliability score as of `now`, or None before its first decision.

    Its latest decision's model confidence, read against the category's feedback and
    history and the ticket's pattern as they stand now: feedback given since the decision
    moves it at once (what the decision itself used stays in Decision.reliability).
    """
    confidence = (
        ticket.decisions.order_by("-created_at").values_list("confidence", flat=True).first()
    )
    if confidence is None:
        return None
    # The score's inputs only: not the fleet's counts or the host a decision reads too.
    history = category_history(ticket, enabled_policy(ticket.category), now)
    return reliability_score(
        ReliabilityInputs(
            ai_confidence=confidence,
            feedback=history.feedback,
            category_resolved=history.category_resolved,
            category_total=history.category_total,
            pattern=patterns.facts(history.pattern),
            feedback_formula=settings.WARDEN_FEEDBACK_FORMULA,
        )
    )


def newest_sample(host_id: int) -> MetricSample | None:
    return MetricSample.objects.filter(host_id=host_id).order_by("-taken_at").first()


def readings_show_problem(host_id: int, category: str, decided_sample_id: int | None) -> bool:
    """Do the host's newest readings still show the problem decided on?

    True when nothing newer than the decision's own sample has arrived (or the
    ticket came from elsewhere, with no readings at all).
    """
    sample = newest_sample(host_id)
    if sample is None or sample.pk == decided_sample_id:
        return True
    return sample_shows_problem(sample, category)
