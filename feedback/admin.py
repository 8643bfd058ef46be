from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from config.admin_actions import NeverDeleted
from feedback import patterns
from feedback.actions import edit_feedback, give_feedback
from feedback.models import Feedback, Pattern, PostActionReview, ReviewStatus
from governance.admin.base import GovernedAdmin, ReadOnlyHistoryAdmin, given_reason
from governance.audit import permissions
from governance.audit.changes import REASON_FIELD
from governance.decisions.facts import enabled_policy
from governance.promotions.actions import ReviewError, acknowledge_review, flag_review
from governance.promotions.reviews import describe_action
from remediation.choices import ExecutionState, TicketStatus

# A pattern's page lists this many of its newest tickets.
SIMILAR_INCIDENTS_SHOWN = 50


class CurrentFilter(admin.SimpleListFilter):
    """Each person's current verdict per ticket (what counts), or the ones replaced since."""

    title = "current"
    parameter_name = "current"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("yes", "Current (counts)"), ("no", "Replaced by a later verdict")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(superseded_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(superseded_at__isnull=False)
        return queryset


@admin.register(Feedback)
class FeedbackAdmin(GovernedAdmin):
    list_display = [
        "ticket",
        "feedback_type",
        "rating",
        "submitted_by",
        "given_by",
        "counts",
        "created_at",
    ]
    list_filter = ["feedback_type", "rating", "from_service", CurrentFilter]
    search_fields = ["ticket__ticket_id", "comment"]
    list_select_related = ["ticket", "submitted_by"]
    reason_on_add = False  # the feedback is its own reason

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # A verdict counted on the pattern is not counted again, nor moved to another ticket.
        shown = ["submitted_by", "from_service", "superseded_at", "superseded_by"]
        return shown + (["ticket", "feedback_type"] if obj is not None else [])

    @admin.display(description="Given by", ordering="from_service")
    def given_by(self, obj: Feedback) -> str:
        return "a service account" if obj.from_service else "a person"

    @admin.display(description="Counts")
    def counts(self, obj: Feedback) -> str:
        if obj.superseded_at is not None:
            return f"no: replaced by #{obj.superseded_by_id}"
        return "yes"

    def save_model(self, request, obj: Feedback, form, change) -> None:
        feedback, now = self.row_to_save(obj, form, change), timezone.now()
        if change:
            edit_feedback(feedback, actor=request.user, reason=given_reason(form), now=now)
        else:
            give_feedback(feedback, actor=request.user, reason="", now=now)


@admin.register(Pattern)
class PatternAdmin(ReadOnlyHistoryAdmin):
    """Learned from outcomes and feedback only: nobody edits the counts automation relies on."""

    list_display = [
        "category",
        "key_terms",
        "occurrence_count",
        "eligible_for_auto_remediation",
        "autonomy",
        "last_seen_at",
    ]
    list_filter = ["category", "eligible_for_auto_remediation"]
    list_select_related = ["autonomy"]
    exclude = ["centroid"]  # a sparse vector: the incidents below say what it learned
    readonly_fields = ["eligibility", "similar_incidents"]

    @admin.display(description="Eligible?")
    def eligibility(self, obj: Pattern) -> str:
        policy = enabled_policy(obj.category)
        needed = policy.min_similar_tickets if policy is not None else 0
        resolved = obj.tickets.filter(status=TicketStatus.RESOLVED).count()
        return format_html_join(
            "", "<p>{}</p>", ((line,) for line in patterns.eligibility_lines(obj, resolved, needed))
        )

    @admin.display(description="Similar incidents")
    def similar_incidents(self, obj: Pattern) -> str:
        """The pattern's tickets, newest first: each links to its own page."""
        tickets = obj.tickets.order_by("-opened_at", "-pk")[:SIMILAR_INCIDENTS_SHOWN]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:remediation_ticket_change", args=[ticket.pk]),
                    ticket.ticket_id,
                    ticket.title,
                    ticket.get_status_display(),
                    "-"
                    if ticket.pattern_similarity is None
                    else f"{ticket.pattern_similarity:.2f}",
                    f"{ticket.opened_at:%Y-%m-%d %H:%M}",
                )
                for ticket in tickets
            ),
        )
        if not rows:
            return "No tickets yet."
        return format_html(
            "<table><thead><tr><th>Ticket</th><th>Title</th><th>Status</th>"
            "<th>Similarity</th><th>Opened</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Autonomy")
    def autonomy(self, obj: Pattern) -> str:
        # Lowered after failures or poor feedback (governance.promotions), else its policy's.
        lowered = getattr(obj, "autonomy", None)
        return f"L{lowered.autonomy_level} at most" if lowered else "its policy's"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# --- Post-action reviews (governance.promotions: reviews, actions) ------------------------


FLAG_NEEDS_A_REASON = "Say why you flag it: the reason goes into the audit trail and the feedback."


class DueFilter(admin.SimpleListFilter):
    """Open reviews past their due time (the console's and the home page's links), or
    not yet due."""

    title = "due"
    parameter_name = "overdue"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("yes", "Overdue"), ("no", "Open, not yet due")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(status=ReviewStatus.OPEN, due_at__lte=now)
        if self.value() == "no":
            return queryset.filter(status=ReviewStatus.OPEN, due_at__gt=now)
        return queryset


def review_action(verb: str, description: str) -> Any:
    """An admin action that asks first (a note to acknowledge; a reason, required, to
    flag), then makes each selected review through governance.promotions.actions; a flag
    the action refuses for want of a reason asks again."""
    flagging = verb == "flag"

    @admin.action(description=description, permissions=["review"])
    def action(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        text = request.POST.get("note", "").strip()
        error = ""
        if request.POST.get("confirmed") == "yes":
            try:
                for review in queryset:
                    modeladmin.message_user(request, *_review(review, verb, request.user, text))
                return None
            except ValidationError:  # no reason: refused before anything changed
                error = FLAG_NEEDS_A_REASON
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": description,
            "verb": verb,
            "flagging": flagging,
            "reviews": list(
                queryset.select_related(
                    "execution__ticket", "execution__host", "execution__runbook"
                )
            ),
            "note": text,
            "error": error,
            "action_name": request.POST.get("action"),
            "opts": modeladmin.model._meta,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(
            request, "admin/feedback/postactionreview/confirm_review.html", context
        )

    action.__name__ = f"{verb}_action"
    return action


def _review(review: PostActionReview, verb: str, user: Any, text: str) -> tuple[str, int]:
    """Make one review; (message, level) for the admin, a refusal said as it is. A missing
    reason is raised on, for the page to ask for one."""
    now = timezone.now()
    try:
        if verb == "flag":
            flag_review(review, actor=user, reason=text, now=now)
            what = describe_action(review.execution)
            return f"Flagged {what}: negative feedback recorded in your name.", messages.SUCCESS
        acknowledge_review(review, actor=user, reason=text, now=now)
        return f"Acknowledged {describe_action(review.execution)}.", messages.SUCCESS
    except ReviewError as refused:
        return refused.message, messages.ERROR
    except ValidationError as refused:
        if REASON_FIELD in getattr(refused, "error_dict", {}):
            raise
        return "; ".join(refused.messages), messages.ERROR
    except PermissionDenied as refused:
        return str(refused), messages.ERROR


@admin.register(PostActionReview)
class PostActionReviewAdmin(NeverDeleted, admin.ModelAdmin):
    """What Warden did by itself at L2 and L3, for people to acknowledge or flag: open
    ones first, the longest overdue at the top. Read-only; the actions make a review."""

    list_display = [
        "review_state",
        "due",
        "ticket",
        "what_ran",
        "level",
        "how_it_ended",
        "reviewed",
    ]
    list_filter = [
        DueFilter,
        "status",
        "autonomy_level",
        "outcome",
        "execution__runbook__category",
        "execution__host",
    ]
    search_fields = [
        "execution__ticket__ticket_id",
        "execution__host__name",
        "execution__runbook__name",
        "note",
    ]
    list_select_related = [
        "execution__ticket",
        "execution__host",
        "execution__runbook",
        "reviewed_by",
    ]
    # Open first, the longest overdue at the top; then the most recently reviewed.
    ordering = [
        Case(
            When(status=ReviewStatus.OPEN, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        ).asc(),
        Case(When(status=ReviewStatus.OPEN, then=F("due_at"))).asc(nulls_last=True),
        F("reviewed_at").desc(nulls_last=True),
    ]
    fields = [
        "review_state",
        "ticket",
        "what_ran",
        "autonomy_level",
        "outcome",
        "execution_now",
        "why_warden_acted",
        "output",
        "opened_at",
        "due_at",
        "reviewed_by",
        "reviewed_at",
        "note",
        "flag_feedback",
    ]
    readonly_fields = fields
    actions = [
        review_action("acknowledge", "Acknowledge: what Warden did was right"),
        review_action("flag", "Flag: what Warden did was wrong (say why)"),
    ]

    def has_review_permission(self, request: HttpRequest) -> bool:
        # The admin actions show only to those who may review; the actions check again.
        return request.user.has_perm(permissions.REVIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # opened by Warden when an automatic execution ends

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # made by the actions, once

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {
            "may_review": self.has_review_permission(request),
            "review_actions": [("acknowledge", "Acknowledge"), ("flag", "Flag")],
            "now": timezone.now(),
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="Review", ordering="status")
    def review_state(self, obj: PostActionReview) -> str:
        if obj.status != ReviewStatus.OPEN:
            return obj.get_status_display()
        if obj.is_overdue(timezone.now()):
            return format_html('<strong class="overdue">{}</strong>', "Overdue")
        return "Open"

    @admin.display(description="Due", ordering="due_at")
    def due(self, obj: PostActionReview) -> str:
        now = timezone.now()
        if obj.status != ReviewStatus.OPEN:
            return "-"
        if obj.due_at <= now:
            return f"{timesince(obj.due_at, now, depth=1)} ago"
        return f"in {timesince(now, obj.due_at, depth=1)}"

    @admin.display(description="Ticket", ordering="execution__ticket__ticket_id")
    def ticket(self, obj: PostActionReview) -> str:
        ticket = obj.execution.ticket
        return format_html(
            '<a href="{}" title="{}">{}</a>',
            reverse("admin:remediation_ticket_change", args=[ticket.pk]),
            ticket.title,
            ticket.ticket_id,
        )

    @admin.display(description="Level", ordering="autonomy_level")
    def level(self, obj: PostActionReview) -> str:
        return format_html(
            '<span title="{}">L{}</span>', obj.get_autonomy_level_display(), obj.autonomy_level
        )

    @admin.display(description="How it ended", ordering="outcome")
    def how_it_ended(self, obj: PostActionReview) -> str:
        # A failed action may be rolled back after its review opened: say both.
        now = obj.execution.state
        if now == obj.outcome:
            return obj.get_outcome_display()
        return f"{obj.get_outcome_display()}, now {ExecutionState(now).label.lower()}"

    @admin.display(description="What Warden ran")
    def what_ran(self, obj: PostActionReview) -> str:
        execution = obj.execution
        return format_html(
            '<a href="{}">{}</a> on {}',
            reverse("admin:remediation_execution_change", args=[execution.pk]),
            execution.runbook.name,
            execution.host.name,
        )

    @admin.display(description="Execution now")
    def execution_now(self, obj: PostActionReview) -> str:
        # A failed action is rolled back after its review opened: say where it ended.
        return ExecutionState(obj.execution.state).label

    @admin.display(description="Reviewed")
    def reviewed(self, obj: PostActionReview) -> str:
        if obj.reviewed_by is None:
            return "-"
        when = timezone.localtime(obj.reviewed_at)
        return f"by {obj.reviewed_by.get_username()}, {when:%Y-%m-%d %H:%M}"

    @admin.display(description="Why Warden acted by itself")
    def why_warden_acted(self, obj: PostActionReview) -> str:
        decision = obj.execution.decision
        reasons = decision.reasons if decision is not None else []
        return format_html(
            "<ol>{}</ol>", format_html_join("", "<li>{}</li>", ((r,) for r in reasons))
        )

    @admin.display(description="What it ran, and its output")
    def output(self, obj: PostActionReview) -> str:
        execution = obj.execution
        commands = "\n".join(execution.commands or []) or execution.action
        text = (execution.rollback_output or execution.output or "")[-2000:]
        return format_html("<pre>$ {}</pre><pre>{}</pre>", commands, text or "(no output)")

    @admin.display(description="Negative feedback (flag)")
    def flag_feedback(self, obj: PostActionReview) -> str:
        if obj.feedback_id is None:
            return "-"
        return format_html(
            '<a href="{}">feedback #{}</a>',
            reverse("admin:feedback_feedback_change", args=[obj.feedback_id]),
            obj.feedback_id,
        )
