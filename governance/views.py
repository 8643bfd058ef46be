"""The live operations console page (events arrive over /ws/console)."""

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render

from governance.live import latest_sequence
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.choices import TICKET_OPEN_STATUSES
from remediation.models import Ticket


@staff_member_required
@permission_required("governance.view_auditevent", raise_exception=True)
def console(request: HttpRequest) -> HttpResponse:
    context = {
        "open_tickets": Ticket.objects.filter(status__in=list(TICKET_OPEN_STATUSES))
        .select_related("host")
        .order_by("-last_seen_at")[:50],
        "pending_approvals": ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
        .select_related("ticket__host", "runbook", "decision")
        .annotate(approval_count=Count("approvals"))
        .order_by("created_at"),
        "last_sequence": max(latest_sequence() - 50, 0),
        "csrf": get_token(request),  # the approve/reject buttons post with it
    }
    return render(request, "console.html", context)
