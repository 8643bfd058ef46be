from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from config.admin_actions import confirmed_action
from governance.admin_governed import GovernedAdmin
from governance.models import Decision
from remediation.executions import cancel_execution, roll_back_execution
from remediation.hosts import register_host, save_host
from remediation.models import Execution, Host, Runbook, Ticket
from remediation.runbooks import save_runbook
from remediation.tickets import close_ticket, save_ticket


@admin.register(Host)
class HostAdmin(GovernedAdmin):
    list_display = ["name", "enabled", "last_seen_at", "api_key_prefix", "labels"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    readonly_fields = ["api_key_prefix", "created_at", "last_seen_at"]

    def save_governed(self, request, obj, reason) -> None:
        if obj.pk is not None:
            save_host(obj, user=request.user, reason=reason)
            return
        obj._history_user = request.user  # as SimpleHistoryAdmin.save_model does
        key = register_host(obj, user=request.user, reason=reason)
        messages.warning(request, f"API key for {obj.name} (shown once, store it now): {key}")


@admin.register(Runbook)
class RunbookAdmin(GovernedAdmin):
    list_display = ["name", "category", "action_type", "reversible", "rollback_action", "enabled"]
    list_filter = ["category", "action_type", "reversible", "enabled"]
    search_fields = ["name", "title", "action"]

    def save_governed(self, request, obj, reason) -> None:
        # An edit voids pending approvals and unstarted executions and decides again.
        save_runbook(obj, user=request.user, reason=reason, now=timezone.now())


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "outcome",
        "model_outcome",
        "confidence",
        "runbook",
        "policy",
        "reasons",
        "model_drivers",
    ]
    readonly_fields = fields
    show_change_link = True

    @admin.display(description="What drove the model")
    def model_drivers(self, obj: Decision) -> str:
        # explanation: [[feature, drop in the class's probability at its healthy value], ...]
        return ", ".join(f"{name} {weight:+.2f}" for name, weight in obj.explanation[:3]) or "-"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ExecutionInline(admin.TabularInline):
    model = Execution
    extra = 0
    can_delete = False
    fields = ["created_at", "runbook", "state", "started_at", "finished_at", "output"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _resolve_by_hand(ticket: Ticket, user, note: str) -> str:
    close_ticket(ticket, user=user, resolved=True, note=note, now=timezone.now())
    return f"{ticket.ticket_id} resolved by hand."


def _close_unresolved(ticket: Ticket, user, note: str) -> str:
    close_ticket(ticket, user=user, resolved=False, note=note, now=timezone.now())
    return f"{ticket.ticket_id} closed unresolved."


@admin.register(Ticket)
class TicketAdmin(GovernedAdmin):
    list_display = [
        "ticket_id",
        "title",
        "host",
        "category",
        "status",
        "severity",
        "occurrence_count",
        "opened_at",
    ]
    list_filter = ["status", "category", "source"]
    search_fields = ["ticket_id", "title", "host__name"]
    list_select_related = ["host"]
    readonly_fields = [
        "evidence",
        "ticket_id",
        "opened_at",
        "last_seen_at",
        "resolved_at",
        "severity",
        "confidence",
        "occurrence_count",
        "status",
        # Where and what the problem is, and how it ended, are the pipeline's record.
        "host",
        "category",
        "source",
        "resolution",
        "pattern",
        "pattern_similarity",
    ]
    inlines = [DecisionInline, ExecutionInline]

    def has_add_permission(self, request) -> bool:
        return False  # tickets come from the pipeline, with their decision and audit trail

    def save_governed(self, request, obj, reason) -> None:
        save_ticket(obj, user=request.user, reason=reason)

    @admin.display(description="Evidence")
    def evidence(self, obj: Ticket) -> str:
        url = reverse("ticket-evidence-page", args=[obj.ticket_id])
        return format_html('<a href="{}">The whole story, printable</a>', url)

    actions = [
        confirmed_action(
            description="Resolve selected tickets by hand",
            verb="resolve",
            perform=_resolve_by_hand,
            permissions=("change",),
        ),
        confirmed_action(
            description="Close selected tickets unresolved",
            verb="close",
            perform=_close_unresolved,
            permissions=("change",),
        ),
    ]


def _cancel(execution: Execution, user, note: str) -> str:
    cancel_execution(execution, user=user, reason=note, now=timezone.now())
    return f"Cancelled {execution}: nothing more of it will start."


def _roll_back(execution: Execution, user, note: str) -> str:
    roll_back_execution(
        execution, user=user, reason=note or "requested in the admin", now=timezone.now()
    )
    return f"Rollback of {execution} sent to the agent."


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["id", "ticket", "host", "runbook", "state", "created_at", "finished_at"]
    list_filter = ["state", "runbook"]
    search_fields = ["ticket__ticket_id", "host__name", "idempotency_key"]
    list_select_related = ["ticket", "host", "runbook"]
    actions = [
        confirmed_action(
            description="Cancel selected executions",
            verb="cancel",
            perform=_cancel,
            permissions=("roll_back",),
        ),
        confirmed_action(
            description="Roll back selected executions",
            verb="roll back",
            perform=_roll_back,
            permissions=("roll_back",),
        ),
    ]

    def has_roll_back_permission(self, request) -> bool:
        # Rows stay read-only in the admin; cancelling and rolling back are a supervisor's.
        return request.user.has_perm("remediation.change_execution")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
