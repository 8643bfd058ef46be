"""The live operations console: the page, and the panels it fetches again on each event."""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.utils import timezone

from governance.audit import permissions
from governance.console.live import latest_sequence
from governance.console.panels import panels
from governance.rules.labels import EVENT_LABELS

# The console streams the whole audit trail: those who may read all of it may watch it.
BACKLOG_EVENTS = 50  # the events shown on opening, before live ones arrive


@staff_member_required
@permission_required([permissions.VIEW_AUDIT, permissions.VIEW_WHOLE_AUDIT], raise_exception=True)
def console(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),  # the admin's header, navigation and theme
        **panels(timezone.now()),
        "title": "Live console",
        "is_nav_sidebar_enabled": False,  # the console needs the width; the header links home
        "last_sequence": max(latest_sequence() - BACKLOG_EVENTS, 0),
        "event_labels": EVENT_LABELS,
        "csrf": get_token(request),  # the approve/reject dialog posts with it
        "can_approve": request.user.has_perm(permissions.APPROVE),
    }
    return render(request, "console.html", context)


@staff_member_required
@permission_required([permissions.VIEW_AUDIT, permissions.VIEW_WHOLE_AUDIT], raise_exception=True)
def console_panels(request: HttpRequest) -> HttpResponse:
    """The banner, approvals, fleet and tickets as they are now (an HTML fragment)."""
    context = {
        **panels(timezone.now()),
        "can_approve": request.user.has_perm(permissions.APPROVE),
    }
    return render(request, "console/panels.html", context)
