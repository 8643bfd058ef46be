"""The live operations console page (events arrive over /ws/console)."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.live import latest_sequence
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.choices import TICKET_OPEN_STATUSES
from remediation.models import Ticket


@staff_member_required
def console(request: HttpRequest) -> HttpResponse:
    context = {
        "open_tickets": Ticket.objects.filter(status__in=list(TICKET_OPEN_STATUSES))
        .select_related("host")
        .order_by("-last_seen_at")[:50],
        "pending_approvals": ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
        .select_related("ticket__host", "runbook", "decision")
        .order_by("created_at"),
        "last_sequence": max(latest_sequence() - 50, 0),
    }
    return render(request, "console.html", context)
