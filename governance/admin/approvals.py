"""Approval requests: read-only, decided by the approve and reject actions (as the API and
the notices' links decide them), pending and oldest first."""

from django.contrib import admin
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.html import format_html_join

from config.admin_actions import confirmed_action
from governance.admin.base import ReadOnlyHistoryAdmin, cut
from governance.approvals.actions import approve_request, reject_request
from governance.audit import permissions
from governance.models import Approval, ApprovalRequest, ApprovalStatus
from governance.rules import labels


class ApprovalInline(admin.TabularInline):
    model = Approval
    extra = 0
    can_delete = False
    fields = ["approver", "verdict", "comment", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _approve(request_obj: ApprovalRequest, user, note: str) -> str:
    result = approve_request(request_obj, actor=user, reason=note, now=timezone.now())
    if result.status == ApprovalStatus.APPROVED:
        return f"Approved {result}: execution queued."
    return f"Approval recorded for {result}; {result.required_approvals} needed in all."


def with_what_it_will_do(request_obj: ApprovalRequest) -> ApprovalRequest:
    """The request with what the confirmation page shows as the console's dialog does: its
    host's newest readings and its approvals so far."""
    request_obj.readings = request_obj.ticket.host.newest_reading()
    request_obj.approval_count = request_obj.approvals.filter(verdict="approve").count()
    return request_obj


def _reject(request_obj: ApprovalRequest, user, note: str) -> str:
    reject_request(request_obj, actor=user, reason=note, now=timezone.now())
    return f"Rejected {request_obj}: nothing will run."


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "ticket_on_host",
        "runbook",
        "status",
        "approvals_so_far",
        "why_a_person",
        "time_left",
    ]
    list_filter = ["status", "runbook__category"]
    search_fields = ["ticket__ticket_id", "ticket__host__name"]
    list_select_related = ["ticket__host", "runbook", "decision"]
    ordering = ["status", "created_at"]  # pending first, oldest first: what waits longest

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(approve_count=Count("approvals", filter=Q(approvals__verdict="approve")))
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {
            "may_decide": self.has_decide_permission(request),
            "decide_actions": [("approve", "Approve"), ("reject", "Reject")],
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="Ticket", ordering="ticket__ticket_id")
    def ticket_on_host(self, obj: ApprovalRequest) -> str:
        return f"{obj.ticket.ticket_id} on {obj.ticket.host.name}"

    @admin.display(description="Approvals")
    def approvals_so_far(self, obj: ApprovalRequest) -> str:
        return f"{obj.approve_count} of {obj.required_approvals}"

    @admin.display(description="Why a person is needed")
    def why_a_person(self, obj: ApprovalRequest) -> str:
        reasons = obj.decision.reasons if obj.decision else []
        return cut(reasons[-1], 70) if reasons else "-"

    @admin.display(description="Time left", ordering="expires_at")
    def time_left(self, obj: ApprovalRequest) -> str:
        if obj.status != ApprovalStatus.PENDING:
            return "-"
        left = obj.expires_at - timezone.now()
        if left.total_seconds() <= 0:
            return "expired"
        hours, rest = divmod(int(left.total_seconds()), 3600)
        return f"{hours} h {rest // 60:02d} min"

    readonly_fields = [
        "ticket",
        "decision",
        "runbook",
        "runbook_version",
        "status",
        "void_reason",
        "required_approvals",
        "requested_by",
        "created_at",
        "expires_at",
        "decided_at",
        "decision_reasons",
        "model_drivers",
    ]
    inlines = [ApprovalInline]
    actions = [
        confirmed_action(
            description="Approve selected remediations",
            verb="approve",
            perform=_approve,
            permissions=("decide",),
            details_template="approvals/what_it_will_do.html",
            prepare=with_what_it_will_do,
        ),
        confirmed_action(
            description="Reject selected remediations",
            verb="reject",
            perform=_reject,
            permissions=("decide",),
            details_template="approvals/what_it_will_do.html",
            prepare=with_what_it_will_do,
        ),
    ]

    def has_decide_permission(self, request) -> bool:
        # The actions only show to those who may decide; approve_request checks again.
        return request.user.has_perm(permissions.APPROVE)

    @admin.display(description="Why a person is needed")
    def decision_reasons(self, obj: ApprovalRequest) -> str:
        lines = obj.decision.reasons if obj.decision else []
        return format_html_join("\n", "<li>{}</li>", ((line,) for line in lines))

    @admin.display(description="What drove the model")
    def model_drivers(self, obj: ApprovalRequest) -> str:
        if obj.decision is None:
            return "-"
        severity = labels.SEVERITY_BY_OUTCOME.get(obj.decision.model_outcome)
        return labels.driver_list(obj.decision.explanation, severity) or "-"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Only approve and reject change a request (the actions, the API, the console).
        return False
