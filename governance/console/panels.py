"""What the live console shows: the fleet, what waits for people, and the state of automation.

Read-only queries for the console page and for the panels it fetches again whenever the
event stream says something changed, so what a supervisor sees is always the database's
state, never a page patched together from events.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Case, Count, IntegerField, Max, Q, Value, When
from django.db.models.functions import TruncHour
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.models import PostActionReview
from governance.models import ApprovalRequest, ApprovalStatus, Pause
from governance.pauses.state import active_pauses
from governance.promotions.reviews import open_reviews, overdue_reviews
from remediation.choices import (
    TICKET_OPEN_STATUSES,
    TICKET_PEOPLE_STATUSES,
    ExecutionState,
    TicketStatus,
)
from remediation.models import Execution, Host, Ticket
from scoring.choices import ModelStatus
from scoring.features import Reading
from scoring.models import ModelVersion, SampleMinute
from scoring.monitoring import OUT_OF_DEPTH, DriftReport, model_drift

SPARK_WINDOW = timedelta(hours=1)
SPARK_BUCKETS = 60  # one point a minute
FLEET_LIMIT = 200  # hosts on the page, worst first; the admin lists the rest
OPEN_TICKETS_LIMIT = 50
# Overdue reviews and escalated tickets named in the banner's lists; the admin lists the rest.
ATTENTION_LISTED = 5
OVERDUE_REVIEWS_LIMIT = 50
# The drift report reads a day of samples: computed at most once a minute per process,
# not on every panel refresh.
DRIFT_CACHE_SECONDS = 60
# Percent readings drawn in the sparkline, with the colour class of each line, and the
# minute summaries' column drawn for each (its highest: a spike is what people look for).
SPARK_SERIES = (("cpu_usage", "CPU"), ("memory_usage", "memory"), ("disk_usage", "disk"))
SPARK_COLUMNS = {"cpu_usage": "cpu_max", "memory_usage": "memory_max", "disk_usage": "disk_max"}
SEVERITY_LABELS = {0: "Healthy", 1: "Auto-heal", 2: "Needs a person"}
SEVERITY_CLASSES = {0: "ok", 1: "heal", 2: "person"}
# Fleet order: what needs a person, what heals itself, hosts gone silent, then the healthy.
FLEET_ORDER = {2: 0, 1: 1, None: 2, 0: 3}


@dataclass
class HostRow:
    host: Host
    readings: Reading | None
    severity: int | None  # the model's class of the newest sample in the window
    sparkline: SafeString
    open_tickets: list[Ticket] = field(default_factory=list)

    @property
    def severity_label(self) -> str:
        return SEVERITY_LABELS.get(self.severity, "No readings this hour")

    @property
    def severity_class(self) -> str:
        return SEVERITY_CLASSES.get(self.severity, "stale")


@dataclass(frozen=True)
class FleetState:
    """The banner: is automation running, who waits for people, can the model be trusted,
    and what Warden did by itself that nobody has reviewed in time."""

    pauses: list[Pause]
    waiting: int
    oldest_waiting: ApprovalRequest | None
    waiting_over_an_hour: int
    held: int
    failed_today: int
    drift: DriftReport | None
    serving_version: int | None
    # Tickets handed to people (a failed fix left partially remediated, a rejection, a
    # cancelled change, a text naming no host): they wait for a person as an approval does.
    escalated: int = 0
    escalated_tickets: list[Ticket] = field(default_factory=list)  # the most recent few
    reviews_open: int = 0
    reviews_overdue: int = 0
    overdue: list[PostActionReview] = field(default_factory=list)  # the longest overdue few
    # Tickets in people's words stored and not triaged yet (remediation.triage).
    processing: int = 0

    @property
    def level(self) -> str:
        """The banner's colour: stopped, needs people, or running."""
        if self.pauses or self.serving_version is None:
            return "stopped"
        if (
            self.waiting
            or self.held
            or self.escalated
            or self.reviews_overdue
            or (self.drift and self.drift.level == OUT_OF_DEPTH)
        ):
            return "attention"
        return "running"


def bucketed(
    points: Iterable[tuple[datetime, float]], start: datetime, end: datetime, buckets: int
) -> list[float | None]:
    """The highest value in each of `buckets` equal slices of [start, end); None where empty.

    The highest, not the mean: a spike is what a supervisor looks for.
    """
    width = (end - start) / buckets
    values: list[float | None] = [None] * buckets
    for taken_at, value in points:
        if not start <= taken_at < end:
            continue
        index = min(int((taken_at - start) / width), buckets - 1)
        current = values[index]
        values[index] = value if current is None else max(current, value)
    return values


def sparkline_svg(
    series: Mapping[str, Sequence[float | None]],
    *,
    labels: Mapping[str, str],
    width: int = 160,
    height: int = 32,
    top: float = 100.0,
    period: str = "Last hour",
) -> SafeString:
    """An inline SVG with one polyline per series on a 0-`top` scale; gaps break the line.

    Rendered on the server, so the console needs no chart library and no CDN.
    """
    buckets = max((len(values) for values in series.values()), default=0)
    if buckets < 2:
        return SafeString('<span class="spark-empty">no readings</span>')
    step = width / (buckets - 1)
    lines = []
    summary = []
    for name, values in series.items():
        segments: list[list[str]] = [[]]
        for index, value in enumerate(values):
            if value is None:
                segments.append([])
                continue
            y = height - 1 - (min(max(value, 0.0), top) / top) * (height - 2)
            segments[-1].append(f"{index * step:.1f},{y:.1f}")
        for points in segments:
            if len(points) == 1:  # a lone reading: a dot, not an invisible line
                x, y = points[0].split(",")
                lines.append((name, f"{x},{y} {float(x) + 0.5:.1f},{y}"))
            elif points:
                lines.append((name, " ".join(points)))
        present = [value for value in values if value is not None]
        if present:
            summary.append(f"{labels[name]} {min(present):.0f}-{max(present):.0f}%")
    title = f"{period}: " + (", ".join(summary) if summary else "no readings")
    return format_html(
        '<svg class="spark" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="{}"><title>{}</title>{}</svg>',
        width,
        height,
        width,
        height,
        title,
        title,
        format_html_join("", '<polyline class="spark-{}" points="{}"/>', lines),
    )


def fleet(now: datetime, limit: int = FLEET_LIMIT) -> tuple[list[HostRow], int]:
    """Enabled hosts, those that need people first, with the last hour drawn; and the total.

    Three queries whatever the fleet's size and however many samples are kept: hosts, the
    hour's minute summaries (scoring.models.SampleMinute, one row a host a minute, by when
    each reading was taken on the server's clock: a host whose clock is off is drawn where
    its readings are, and a batch an agent held back where it belongs), open tickets.
    """
    hosts = list(Host.objects.filter(enabled=True).order_by("name"))
    # The hour as 60 whole minutes, the current one last: one summary row per bucket.
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - SPARK_WINDOW
    minutes: dict[int, list[tuple[datetime, int, tuple[float, ...]]]] = defaultdict(list)
    rows_in_window = (
        SampleMinute.objects.filter(minute__gte=start, minute__lte=now)
        .order_by("last_at")
        .values_list(
            "host_id", "minute", "last_severity", *(SPARK_COLUMNS[name] for name, _ in SPARK_SERIES)
        )
    )
    for host_id, minute, severity, *values in rows_in_window.iterator(chunk_size=5000):
        minutes[host_id].append((minute, severity, tuple(values)))
    tickets: dict[int, list[Ticket]] = defaultdict(list)
    for ticket in Ticket.objects.filter(status__in=list(TICKET_OPEN_STATUSES)).order_by(
        "-last_seen_at"
    ):
        tickets[ticket.host_id].append(ticket)

    rows = [
        HostRow(
            host=host,
            readings=host.newest_reading(),
            # the class of the newest reading in the hour
            severity=minutes[host.pk][-1][1] if minutes.get(host.pk) else None,
            sparkline=SafeString(""),
            open_tickets=tickets.get(host.pk, []),
        )
        for host in hosts
    ]
    rows.sort(key=lambda row: (FLEET_ORDER[row.severity], -len(row.open_tickets), row.host.name))
    shown = rows[:limit]
    labels = dict(SPARK_SERIES)
    for row in shown:  # drawn only for the hosts on the page
        history = minutes.get(row.host.pk)
        if history:
            series = {
                name: bucketed(
                    ((minute, values[i]) for minute, _, values in history),
                    start,
                    end,
                    SPARK_BUCKETS,
                )
                for i, (name, _) in enumerate(SPARK_SERIES)
            }
            row.sparkline = sparkline_svg(series, labels=labels)
    return shown, len(rows)


HOST_WINDOW = timedelta(hours=24)


def host_sparkline(host_id: int, now: datetime) -> SafeString:
    """A host's last day drawn as the console draws its hour (each hour's highest), from
    its minute summaries, grouped by hour in the database: 24 rows come back however many
    minutes the day holds or samples are kept. For the host's page."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - HOST_WINDOW
    columns = {name: Max(SPARK_COLUMNS[name]) for name, _ in SPARK_SERIES}
    hours = list(
        SampleMinute.objects.filter(host_id=host_id, minute__gte=start, minute__lte=now)
        .annotate(hour=TruncHour("minute"))
        .order_by()
        .values("hour")
        .annotate(**columns)
        .values_list("hour", *columns)
    )
    if not hours:
        return SafeString("")
    buckets = round(HOST_WINDOW / timedelta(hours=1))
    series = {
        name: bucketed(((row[0], row[i + 1]) for row in hours), start, end, buckets)
        for i, (name, _) in enumerate(SPARK_SERIES)
    }
    return sparkline_svg(series, labels=dict(SPARK_SERIES), width=480, height=48, period="Last day")


def _drift(now: datetime) -> tuple[int | None, DriftReport | None]:
    serving = ModelVersion.objects.filter(status=ModelStatus.APPROVED).first()
    if serving is None:
        return None, None
    report = cache.get_or_set(
        f"console:drift:{serving.version}",
        lambda: model_drift(serving, now),
        DRIFT_CACHE_SECONDS,
    )
    return serving.version, report


def fleet_state(now: datetime) -> FleetState:
    pending = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
    waiting = pending.aggregate(
        count=Count("pk"),
        over_an_hour=Count("pk", filter=Q(created_at__lt=now - timedelta(hours=1))),
    )
    version, drift = _drift(now)
    escalated = Ticket.objects.filter(status__in=list(TICKET_PEOPLE_STATUSES))
    reviews = open_reviews().aggregate(
        count=Count("pk"), overdue=Count("pk", filter=Q(due_at__lte=now))
    )
    return FleetState(
        pauses=list(active_pauses(now)),
        waiting=waiting["count"],
        oldest_waiting=pending.select_related("ticket__host").order_by("created_at").first(),
        waiting_over_an_hour=waiting["over_an_hour"],
        held=Execution.objects.filter(state=ExecutionState.HELD).count(),
        failed_today=Execution.objects.filter(
            state__in=[
                ExecutionState.FAILED,
                ExecutionState.ROLLED_BACK,
                ExecutionState.ROLLBACK_FAILED,
            ],
            finished_at__gte=now - timedelta(hours=24),
        ).count(),
        drift=drift,
        serving_version=version,
        escalated=escalated.count(),
        escalated_tickets=list(
            escalated.select_related("host").order_by("-last_seen_at")[:ATTENTION_LISTED]
        ),
        reviews_open=reviews["count"],
        reviews_overdue=reviews["overdue"],
        overdue=list(overdue_reviews(now)[:ATTENTION_LISTED]),
        processing=Ticket.objects.filter(status=TicketStatus.PROCESSING).count(),
    )


def pending_approvals() -> list[ApprovalRequest]:
    """What waits for people, oldest first, each with the readings and the exact commands."""
    requests = list(
        ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
        .select_related("ticket__host", "runbook", "decision")
        .annotate(approval_count=Count("approvals"))
        .order_by("created_at")
    )
    for request in requests:
        request.readings = request.ticket.host.newest_reading()
        request.model_says = request.decision.model_statement() if request.decision else ""
        request.policy_reasons = (
            policy_reasons(request.decision.reasons, request.model_says) if request.decision else []
        )
    return requests


# A fix a supervisor may undo, and those undone lately (shown so every console sees it go).
RECENT_FIXES = timedelta(hours=24)
RECENT_FIXES_LIMIT = 20
FIX_STATES = (
    ExecutionState.SUCCEEDED,
    ExecutionState.ROLLBACK_PENDING,
    ExecutionState.ROLLING_BACK,
    ExecutionState.ROLLED_BACK,
    ExecutionState.ROLLBACK_FAILED,
)


def recent_fixes(now: datetime, limit: int = RECENT_FIXES_LIMIT) -> list[Execution]:
    """Fixes verified in the last day, newest first, and what became of their rollbacks;
    `can_roll_back` on each: verified, and its runbook has a rollback."""
    rows = list(
        Execution.objects.filter(state__in=FIX_STATES, finished_at__gte=now - RECENT_FIXES)
        .select_related("ticket", "host", "runbook")
        .order_by("-finished_at")[:limit]
    )
    for row in rows:
        row.can_roll_back = (
            row.state == ExecutionState.SUCCEEDED
            and row.runbook.reversible
            and bool(row.runbook.rollback_action)
        )
    return rows


def policy_reasons(reasons: Sequence[str], model_says: str) -> list[str]:
    """Why a person is asked, without what the model said (shown on its own): the engine's
    first line is always the model's (governance.rules.engine), and no line repeats it."""
    return [line for line in reasons[1:] if line != model_says]


def waiting_tickets(shown: Mapping[str, Any]) -> list[Ticket]:
    """The tickets in `shown` (panels()) a supervisor may decide differently: those waiting
    for approval, and those handed to people."""
    tickets = [request.ticket for request in shown["pending_approvals"]]
    return tickets + [ticket for ticket in shown["open_tickets"] if ticket.decided_here]


def open_tickets(limit: int = OPEN_TICKETS_LIMIT) -> list[Ticket]:
    """Open tickets, those waiting for people first, then the most recently seen."""
    escalated_first = Case(
        When(status__in=list(TICKET_PEOPLE_STATUSES), then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    tickets = list(
        Ticket.objects.filter(status__in=list(TICKET_OPEN_STATUSES))
        .select_related("host")
        .order_by(escalated_first, "-last_seen_at")[:limit]
    )
    # Those waiting for approval are decided from the approvals panel; those handed to
    # people, here.
    for ticket in tickets:
        ticket.decided_here = ticket.status in TICKET_PEOPLE_STATUSES
    return tickets


def panels(now: datetime) -> dict[str, Any]:
    """Everything the console's live panels render."""
    rows, total = fleet(now)
    return {
        "state": fleet_state(now),
        "pending_approvals": pending_approvals(),
        "overdue_reviews": list(overdue_reviews(now)[:OVERDUE_REVIEWS_LIMIT]),
        "open_tickets": open_tickets(),
        "recent_fixes": recent_fixes(now),
        "fleet": rows,
        "fleet_total": total,
        "now": now,
    }
