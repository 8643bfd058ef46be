"""The live operations console: the page, the panels it fetches again on each event, and its
controls: pause and resume automation, roll back a verified fix, and decide a waiting ticket
differently (run another runbook, or close it by hand).

Each control is a POST from a dialog, CSRF-protected like every form, that calls the same
action as the admin (governance.pauses.actions, remediation.actions) after the same
permission check, so there is one code path and one audit trail. Answers are JSON:
{"message"} when done, or the API's error shape {"error": {"code", "message", "fields"}} with
400 naming the field, 403 for a person without the permission, 404 and 409 for what is gone or
no longer allowed.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from governance.audit import permissions
from governance.audit.changes import REASON_FIELD
from governance.audit.errors import Refused
from governance.console.live import latest_sequence
from governance.console.panels import panels, waiting_tickets
from governance.models import Pause, PauseScope
from governance.pauses.actions import pause_automation, resume_pause
from governance.rules.labels import EVENT_LABELS
from remediation.actions import (
    close_ticket,
    override_choices,
    override_with_runbook,
    roll_back_execution,
)
from remediation.choices import Category
from remediation.models import Execution, Host, Ticket

# The console streams the whole audit trail: those who may read all of it may watch it.
BACKLOG_EVENTS = 50  # the events shown on opening, before live ones arrive


def panels_with_choices(now: datetime) -> dict[str, Any]:
    """The panels, each waiting ticket with the runbooks a supervisor may run instead."""
    shown = panels(now)
    for ticket in waiting_tickets(shown):
        ticket.override_choices = override_choices(ticket)
    return shown


@staff_member_required
@permission_required([permissions.VIEW_AUDIT, permissions.VIEW_WHOLE_AUDIT], raise_exception=True)
def console(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),  # the admin's header, navigation and theme
        **panels_with_choices(timezone.now()),
        "title": "Live console",
        "is_nav_sidebar_enabled": False,  # the console needs the width; the header links home
        "last_sequence": max(latest_sequence() - BACKLOG_EVENTS, 0),
        "event_labels": EVENT_LABELS,
        "csrf": get_token(request),  # the approve/reject dialog posts with it
        "can_approve": request.user.has_perm(permissions.APPROVE),
        **control_permissions(request),
        # The pause dialog's choices.
        "pause_scopes": PauseScope.choices,
        "categories": Category.choices,
        "hosts": Host.objects.filter(enabled=True).order_by("name").values_list("name", flat=True),
    }
    return render(request, "console.html", context)


@staff_member_required
@permission_required([permissions.VIEW_AUDIT, permissions.VIEW_WHOLE_AUDIT], raise_exception=True)
def console_panels(request: HttpRequest) -> HttpResponse:
    """The banner, approvals, fleet and tickets as they are now (an HTML fragment)."""
    context = {
        **panels_with_choices(timezone.now()),
        "can_approve": request.user.has_perm(permissions.APPROVE),
        **control_permissions(request),
    }
    return render(request, "console/panels.html", context)


REASON_HELP = "why (recorded in the audit trail)"
# How a waiting ticket is decided by hand, besides running another runbook.
CLOSE_CHOICES = {"resolve": True, "close": False}


def control_permissions(request: HttpRequest) -> dict[str, bool]:
    """Which controls the console shows `request.user`: the same permissions the actions check."""
    user = request.user
    return {
        "can_pause": user.has_perm(permissions.PAUSE),
        "can_resume": user.has_perm(permissions.RESUME),
        "can_roll_back": user.has_perm(permissions.SUPERVISE),
        "can_override": user.has_perm(permissions.SUPERVISE),
        "can_close": user.has_perm(permissions.CLOSE_TICKET),
    }


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, strip=True, help_text=REASON_HELP)


class PauseForm(forms.Form):
    scope = forms.ChoiceField(choices=PauseScope.choices)
    category = forms.ChoiceField(choices=Category.choices, required=False)
    host = forms.ModelChoiceField(
        Host.objects.filter(enabled=True), to_field_name="name", required=False
    )
    ends_at = forms.DateTimeField(required=False, help_text="optional; ISO 8601 with its zone")
    reason = forms.CharField(max_length=500, strip=True, help_text=REASON_HELP)

    def __init__(self, *args: Any, now: datetime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        scope = data.get("scope")
        if scope == PauseScope.CATEGORY and not data.get("category"):
            self.add_error("category", "Name the category to pause.")
        if scope == PauseScope.HOST and not data.get("host"):
            self.add_error("host", "Name the host to pause.")
        ends_at = data.get("ends_at")
        if ends_at is not None and ends_at <= self.now:
            self.add_error("ends_at", "The pause must end in the future.")
        return data

    def pause(self) -> Pause:
        data = self.cleaned_data
        return Pause(
            scope=data["scope"],
            category=data.get("category") or "",
            host=data.get("host"),
            ends_at=data.get("ends_at"),
        )


class PausePreviewForm(PauseForm):
    """The pause dialog's sentence is shown before a reason is typed."""

    reason = forms.CharField(required=False)


class OverrideForm(forms.Form):
    """`decide`: "runbook" (run `runbook` instead), "resolve" or "close" (by hand)."""

    decide = forms.ChoiceField(choices=[("runbook", "runbook"), *[(k, k) for k in CLOSE_CHOICES]])
    runbook = forms.CharField(required=False, help_text="the runbook's name, to run it instead")
    reason = forms.CharField(max_length=500, strip=True, help_text=REASON_HELP)

    def __init__(self, *args: Any, ticket: Ticket, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticket = ticket

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("decide") == "runbook":
            offered = {runbook.name: runbook for runbook, _ in override_choices(self.ticket)}
            chosen = offered.get(data.get("runbook", ""))
            if chosen is None:
                self.add_error("runbook", "Choose one of the runbooks offered for this ticket.")
            data["runbook"] = chosen
        return data


def pause_preview(
    scope: str,
    *,
    category: str = "",
    host_name: str = "",
    ends_at: datetime | None,
    hosts: int,
) -> str:
    """What a pause will change, in one sentence: "Pauses automation for category disk on all 8
    hosts until 2026-12-07 15:00 UTC"."""
    on_all = f"on all {hosts} hosts" if hosts != 1 else "on the one host"
    what = {
        PauseScope.ALL: f"Pauses all automation {on_all}",
        PauseScope.CATEGORY: f"Pauses automation for category {category} {on_all}",
        PauseScope.HOST: f"Pauses automation for every category on host {host_name}",
    }[PauseScope(scope)]
    until = (
        f"until {ends_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M')} UTC"
        if ends_at is not None
        else "until someone resumes it"
    )
    return (
        f"{what} {until}: nothing new starts by itself there, its approved work is held, "
        "and each new problem waits for a person."
    )


def refused(status: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message, "fields": fields or {}}}, status=status
    )


def invalid(form: forms.Form) -> JsonResponse:
    fields = {name: [str(m) for m in messages] for name, messages in form.errors.items()}
    first = next(iter(fields.items()))
    return refused(400, "invalid", f"{first[0]}: {first[1][0]}", fields)


def control(permission: str) -> Callable:
    """A console control: staff, POST, the action's own permission (403 without it), and any
    refusal of the action answered in the error shape (nothing was changed)."""

    def wrap(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
        @staff_member_required
        @require_POST
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if not request.user.has_perm(permission):
                return refused(403, "forbidden", "You may not do this.")
            try:
                return view(request, *args, **kwargs)
            except PermissionDenied as exc:
                return refused(403, "forbidden", str(exc) or "You may not do this.")
            except ValidationError as exc:
                fields = {
                    ("reason" if name == REASON_FIELD else name): [str(m) for m in messages]
                    for name, messages in getattr(exc, "message_dict", {"": exc.messages}).items()
                }
                first = next(iter(fields.items()))
                return refused(400, "invalid", f"{first[0]}: {first[1][0]}", fields)
            except Refused as exc:
                return refused(exc.status, exc.code, exc.message, exc.fields)

        return checked

    return wrap


@control(permissions.PAUSE)
def pause(request: HttpRequest) -> JsonResponse:
    form = PauseForm(request.POST, now=timezone.now())
    if not form.is_valid():
        return invalid(form)
    taken = pause_automation(
        form.pause(), actor=request.user, reason=form.cleaned_data["reason"], now=timezone.now()
    )
    return JsonResponse({"message": f"Paused: {taken.describe()}", "pause": taken.pk})


@staff_member_required
@require_GET
def pause_preview_view(request: HttpRequest) -> JsonResponse:
    """The pause dialog's sentence for what is chosen so far (it writes nothing)."""
    if not request.user.has_perm(permissions.PAUSE):
        return refused(403, "forbidden", "You may not pause automation.")
    form = PausePreviewForm(request.GET, now=timezone.now())
    if not form.is_valid():
        return invalid(form)
    data = form.cleaned_data
    text = pause_preview(
        data["scope"],
        category=data.get("category") or "",
        host_name=data["host"].name if data.get("host") else "",
        ends_at=data.get("ends_at"),
        hosts=Host.objects.filter(enabled=True).count(),
    )
    return JsonResponse({"preview": text})


@control(permissions.RESUME)
def resume(request: HttpRequest, pk: int) -> JsonResponse:
    form = ReasonForm(request.POST)
    if not form.is_valid():
        return invalid(form)
    pause = get_object_or_404(Pause, pk=pk)
    resume_pause(pause, actor=request.user, reason=form.cleaned_data["reason"], now=timezone.now())
    return JsonResponse({"message": f"Resumed: {pause.describe()}"})


@control(permissions.SUPERVISE)
def roll_back(request: HttpRequest, pk: int) -> JsonResponse:
    form = ReasonForm(request.POST)
    if not form.is_valid():
        return invalid(form)
    execution = get_object_or_404(Execution, pk=pk)
    roll_back_execution(
        execution, actor=request.user, reason=form.cleaned_data["reason"], now=timezone.now()
    )
    return JsonResponse({"message": f"Rollback of {execution} sent to the agent."})


@staff_member_required
@require_POST
def override(request: HttpRequest, ticket_id: str) -> JsonResponse:
    """Run another runbook (the supervisors' permission, as rolling back) or close by hand
    (the permission to change tickets, as the admin's resolve and close actions)."""
    ticket = get_object_or_404(Ticket, ticket_id=ticket_id)
    decide = request.POST.get("decide", "")
    needed = permissions.CLOSE_TICKET if decide in CLOSE_CHOICES else permissions.SUPERVISE
    return _override(request, ticket, needed)


def _override(request: HttpRequest, ticket: Ticket, permission: str) -> JsonResponse:
    @control(permission)
    def decided(request: HttpRequest) -> JsonResponse:
        form = OverrideForm(request.POST, ticket=ticket)
        if not form.is_valid():
            return invalid(form)
        data, now = form.cleaned_data, timezone.now()
        if data["decide"] == "runbook":
            override_with_runbook(
                ticket, data["runbook"], actor=request.user, reason=data["reason"], now=now
            )
            return JsonResponse(
                {"message": f"{ticket.ticket_id}: {data['runbook'].name} queued instead."}
            )
        resolved = CLOSE_CHOICES[data["decide"]]
        close_ticket(ticket, actor=request.user, reason=data["reason"], now=now, resolved=resolved)
        how = "resolved by hand" if resolved else "closed unresolved"
        return JsonResponse({"message": f"{ticket.ticket_id} {how}."})

    return decided(request)
