"""A ticket's evidence page: its whole story on one printable page, for compliance."""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from governance.exports.scope import may_read_ticket_trail
from remediation.evidence import ticket_evidence
from remediation.models import Ticket


@staff_member_required
@permission_required(
    ["remediation.view_ticket", "governance.view_auditevent"], raise_exception=True
)
def evidence_page(request: HttpRequest, ticket_id: str) -> HttpResponse:
    ticket = get_object_or_404(Ticket.objects.select_related("host"), ticket_id=ticket_id)
    if not may_read_ticket_trail(request.user, ticket.ticket_id):
        raise PermissionDenied  # its story is the trail's: the whole, or one's own tickets
    context = {
        **admin.site.each_context(request),  # the admin's header, theme and navigation
        "evidence": ticket_evidence(ticket),
        "ticket": ticket,
        "title": f"Evidence: {ticket.ticket_id}",
    }
    return render(request, "evidence.html", context)
