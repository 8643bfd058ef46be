import shlex

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from config.admin_actions import REFUSALS, confirmed_action
from governance.admin.base import (
    GovernedAdmin,
    ReadOnlyAdmin,
    cut,
    given_reason,
    labelled,
    labelled_filter,
)
from governance.audit import permissions
from governance.audit.changes import REASON_FIELD
from governance.console.panels import host_sparkline
from governance.rules import labels
from remediation.actions import (
    TICKET_WAITING_STATUSES,
    cancel_execution,
    close_ticket,
    override_choices,
    override_with_runbook,
    register_host,
    roll_back_execution,
    save_automation_target,
    save_host,
    save_runbook,
    save_ticket,
)
from remediation.choices import Category, TicketStatus
from remediation.evidence import ticket_story
from remediation.models import Alert, AutomationTarget, Execution, Host, Runbook, Ticket, shown
from remediation.triage import name_host

EDIT = "edit"  # the ticket page's query parameter for the form that edits its facts


@admin.register(Host)
class HostAdmin(GovernedAdmin):
    list_display = ["name", "enabled", "last_seen_at", "agent_version", "api_key_prefix", "labels"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    readonly_fields = [
        "api_key_prefix",
        "created_at",
        "last_seen_at",
        "agent_version",
        "allowlist_reported_at",
        "clock",
        "agent_allows",
        "last_day",
    ]

    @admin.display(description="Clock")
    def clock(self, obj: Host) -> str:
        """How far the agent's clock is from the server's, flagged past the bound: its
        readings are judged on the server's time whatever its clock says."""
        if obj.clock_skew_seconds is None:
            return "Not measured yet: its first batch measures it."
        if obj.clock_is_off:
            return format_html(
                "<strong>Clock off by {} the server's clock</strong> (measured {}; the bound "
                "is {} s). Its readings are judged on the server's time, and its verdicts "
                "say so; set its clock right (NTP).",
                obj.clock_skew,
                obj.clock_checked_at,
                settings.WARDEN_CLOCK_SKEW_FLAG_SECONDS,
            )
        return (
            f"Right: within {settings.WARDEN_CLOCK_SKEW_FLAG_SECONDS} s of the server's clock "
            f"({obj.clock_skew}, measured {obj.clock_checked_at})."
        )

    @admin.display(description="Last day")
    def last_day(self, obj: Host) -> str:
        """Its readings of the last 24 hours (from the minute summaries, so the page costs
        the same with a month of samples kept), and a link to the samples themselves."""
        if obj.pk is None:
            return "-"
        link = format_html(
            '<a href="{}?host={}">Its samples</a>',
            reverse("admin:scoring_metricsample_changelist"),
            obj.pk,
        )
        drawn = host_sparkline(obj.pk, timezone.now())
        return format_html("{} {}", drawn, link) if drawn else format_html("No readings. {}", link)

    @admin.display(description="What its agent allows")
    def agent_allows(self, obj: Host) -> str:
        """The allow-list the agent last reported: a runbook outside it is flagged when
        decided (the agent would refuse it), before anyone approves it."""
        if not obj.allowlist_digest:
            return "Not reported yet: the agent reports it when it starts."
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
            ((name, shown(argv)[0]) for name, argv in sorted(obj.allowlist.items())),
        )
        return format_html(
            "<table><tr><th>action</th><th>command</th></tr>{}</table>"
            "<p>SHA-256 {} &middot; {} actions</p>",
            rows,
            obj.allowlist_digest,
            len(obj.allowlist),
        )

    def save_model(self, request, obj, form, change) -> None:
        host, reason, now = self.row_to_save(obj, form, change), given_reason(form), timezone.now()
        if change:
            save_host(host, actor=request.user, reason=reason, now=now)
            return
        key = register_host(host, actor=request.user, reason=reason, now=now)
        messages.warning(request, f"API key for {host.name} (shown once, store it now): {key}")


@admin.register(Runbook)
class RunbookAdmin(GovernedAdmin):
    list_display = [
        "name",
        "category",
        "command",
        "action_type",
        "reversible",
        "rollback_action",
        "handoff_target",
        "enabled",
    ]
    list_filter = ["category", "action_type", "reversible", "enabled", "handoff_target"]
    search_fields = ["name", "title", "action"]

    @admin.display(description="Command")
    def command(self, obj: Runbook) -> str:
        return format_html("<code>{}</code>", obj.commands[0]) if obj.argv else "-"

    def save_model(self, request, obj, form, change) -> None:
        # An edit voids pending approvals and unstarted executions and decides again.
        save_runbook(
            self.row_to_save(obj, form, change),
            actor=request.user,
            reason=given_reason(form),
            now=timezone.now(),
        )


@admin.register(AutomationTarget)
class AutomationTargetAdmin(GovernedAdmin):
    """Automation systems that run runbooks instead of the agent (remediation.handoff)."""

    list_display = ["name", "kind", "url", "lease_seconds", "enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "url"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.URLField):
            kwargs["assume_scheme"] = "https"  # a launch URL typed without one
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        # An edit voids what was approved to run through it, as a runbook edit does.
        save_automation_target(
            self.row_to_save(obj, form, change),
            actor=request.user,
            reason=given_reason(form),
            now=timezone.now(),
        )


def _resolve_by_hand(ticket: Ticket, user, note: str) -> str:
    close_ticket(ticket, actor=user, reason=note, now=timezone.now(), resolved=True)
    return f"{ticket.ticket_id} resolved by hand."


def _close_unresolved(ticket: Ticket, user, note: str) -> str:
    close_ticket(ticket, actor=user, reason=note, now=timezone.now(), resolved=False)
    return f"{ticket.ticket_id} closed unresolved."


# What the pipeline records of a ticket: shown, never a form field.
TICKET_RECORD = ["story", "ticket_id", "host", "category", "status", "severity_label", "opened_by"]
# A ticket whose text named no registered host waits in these for a person to name one.
WAITING_FOR_A_HOST = (TicketStatus.ESCALATED, TicketStatus.PROCESSING)


class NameHostForm(forms.Form):
    host = forms.ModelChoiceField(
        Host.objects.filter(enabled=True).order_by("name"),
        to_field_name="name",
        help_text="the registered host the ticket is about",
    )
    category = forms.ChoiceField(
        choices=[("", "---------"), *Category.choices],
        required=False,
        help_text="needed only when the ticket has no category yet",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="why this host (recorded in the audit trail)",
    )


class OverrideForm(forms.Form):
    runbook = forms.ModelChoiceField(
        Runbook.objects.none(),
        to_field_name="name",
        help_text="an enabled runbook of the ticket's category that may run without approvers",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="why this runbook instead (recorded in the audit trail)",
    )

    def __init__(self, *args, runbooks: list[Runbook], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["runbook"].queryset = Runbook.objects.filter(
            pk__in=[runbook.pk for runbook in runbooks]
        ).order_by("name")


@admin.register(Ticket)
class TicketAdmin(GovernedAdmin):
    """A ticket's page tells its story (remediation/evidence.ticket_story); people change a
    ticket through its verbs (resolve, close) and may edit its facts with a reason (?edit)."""

    # Fits 1280 px beside the menu and the filter: the source is a filter, not a column.
    list_display = [
        "ticket_id",
        "short_title",
        "host_shown",
        "category",
        "status",
        "severity_label",
        "seen",
        "opened",
    ]

    @admin.display(description="Opened", ordering="opened_at")
    def opened(self, obj: Ticket) -> str:
        # Who opened it matters for separation of duties; one column keeps the list at 1280 px.
        when = date_format(timezone.localtime(obj.opened_at), "DATETIME_FORMAT")
        return f"{when} by {obj.opened_by.get_username()}" if obj.opened_by_id else when

    @admin.display(description="Title", ordering="title")
    def short_title(self, obj: Ticket) -> str:
        return cut(obj.title, 60)

    @admin.display(description="Seen", ordering="occurrence_count")
    def seen(self, obj: Ticket) -> str:
        return f"{obj.occurrence_count}\u00d7"

    list_filter = [
        "status",
        "category",
        "source",
        "priority",
        labelled_filter("severity", "severity", labels.severity_label),
    ]
    search_fields = ["ticket_id", "title", "host__name"]
    list_select_related = ["host", "opened_by"]
    # The edit page (?edit=1): the facts people may change, with why. Where and what the
    # problem is, its state and how it ended are the pipeline's record, never a form field.
    fieldsets = [
        (
            None,
            {"fields": TICKET_RECORD},
        ),
        (
            "Facts people may edit",
            {
                "fields": [
                    "title",
                    "description",
                    "enable_auto_remediation",
                    "affects_billing",
                    "data_integrity",
                    "security_severity",
                    "customer_impact_minutes",
                    REASON_FIELD,
                ]
            },
        ),
    ]
    readonly_fields = TICKET_RECORD

    def has_add_permission(self, request) -> bool:
        return False  # tickets come from the pipeline, with their decision and audit trail

    def save_model(self, request, obj, form, change) -> None:
        save_ticket(
            self.row_to_save(obj, form, change),
            actor=request.user,
            reason=given_reason(form),
            now=timezone.now(),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The story by default; the form (facts and a reason) only when asked for, or posted.
        if request.method == "GET" and EDIT not in request.GET:
            return self.story_view(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def story_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        ticket = self.get_object(request, unquote(object_id))
        if ticket is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, ticket):
            raise PermissionDenied
        may_change = self.has_change_permission(request, ticket)
        context = {
            **self.admin_site.each_context(request),
            **ticket_story(ticket),
            "title": f"{ticket.ticket_id}: {ticket.title}",
            "opts": self.opts,
            "original": ticket,
            "ticket": ticket,
            "may_change": may_change,
            # The verbs, as the list's actions: each asks for a note before it acts.
            "verbs": [("resolve", "Resolve by hand…"), ("close", "Close unresolved…")]
            if may_change and ticket.is_open
            else [],
            "may_override": request.user.has_perm(permissions.SUPERVISE)
            and ticket.status in TICKET_WAITING_STATUSES
            and ticket.host_id is not None,
            "may_name_host": may_change
            and (ticket.host_id is None or not ticket.category)
            and ticket.status in WAITING_FOR_A_HOST,
            "edit_param": EDIT,
        }
        return TemplateResponse(request, "admin/remediation/ticket/story.html", context)

    def get_urls(self) -> list:
        name_host_url = path(
            "<path:object_id>/name-host/",
            self.admin_site.admin_view(self.name_host_view),
            name="remediation_ticket_name_host",
        )
        override_url = path(
            "<path:object_id>/run-another-runbook/",
            self.admin_site.admin_view(self.override_view),
            name="remediation_ticket_override",
        )
        return [name_host_url, override_url, *super().get_urls()]

    def override_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """ "Run another runbook": a supervisor decides a waiting ticket differently, with a
        reason (remediation.actions.override_with_runbook, as the console's control)."""
        ticket = self.get_object(request, unquote(object_id))
        if ticket is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not request.user.has_perm(permissions.SUPERVISE):
            raise PermissionDenied
        story = reverse("admin:remediation_ticket_change", args=[ticket.pk])
        choices = override_choices(ticket)
        form = OverrideForm(request.POST or None, runbooks=[runbook for runbook, _ in choices])
        if request.method == "POST" and form.is_valid():
            try:
                override_with_runbook(
                    ticket,
                    form.cleaned_data["runbook"],
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    now=timezone.now(),
                )
            except REFUSALS as refused:
                self.message_user(
                    request, getattr(refused, "message", str(refused)), messages.ERROR
                )
            else:
                self.message_user(
                    request,
                    f"{ticket.ticket_id}: {form.cleaned_data['runbook'].name} queued instead.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(story)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Run another runbook for {ticket.ticket_id}",
            "opts": self.opts,
            "ticket": ticket,
            "choices": choices,
            "form": form,
            "story_url": story,
        }
        return TemplateResponse(request, "admin/remediation/ticket/override.html", context)

    def name_host_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """ "Name the host": a person names the registered host of a ticket whose text
        named none, with a reason; the ticket is decided then (remediation.triage)."""
        ticket = self.get_object(request, unquote(object_id))
        if ticket is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, ticket):
            raise PermissionDenied
        story = reverse("admin:remediation_ticket_change", args=[ticket.pk])
        form = NameHostForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                decision = name_host(
                    ticket,
                    form.cleaned_data["host"].name,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    now=timezone.now(),
                    category=form.cleaned_data["category"],
                )
            except REFUSALS as refused:
                self.message_user(
                    request, getattr(refused, "message", str(refused)), messages.ERROR
                )
            else:
                decided = f": {decision.reasons[-1]}" if decision and decision.reasons else ""
                self.message_user(
                    request,
                    f"{ticket.ticket_id} is on {form.cleaned_data['host'].name}{decided}",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(story)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Name the host of {ticket.ticket_id}",
            "opts": self.opts,
            "ticket": ticket,
            "form": form,
            "story_url": story,
        }
        return TemplateResponse(request, "admin/remediation/ticket/name_host.html", context)

    @admin.display(description="Host", ordering="host__name")
    def host_shown(self, obj: Ticket) -> str:
        return obj.host_name

    @admin.display(description="Severity", ordering="severity")
    def severity_label(self, obj: Ticket) -> str:
        return labelled(labels.severity_label(obj.severity), obj.get_severity_display())

    @admin.display(description="Story")
    def story(self, obj: Ticket) -> str:
        url = reverse("admin:remediation_ticket_change", args=[obj.pk])
        return format_html('<a href="{}">Back to the ticket\'s story</a>', url)

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
    cancel_execution(execution, actor=user, reason=note, now=timezone.now())
    return f"Cancelled {execution}: nothing more of it will start."


def _roll_back(execution: Execution, user, note: str) -> str:
    roll_back_execution(execution, actor=user, reason=note, now=timezone.now())
    return f"Rollback of {execution} sent to the agent."


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ["id", "ticket", "host", "runbook", "state", "created_at", "finished_at"]
    list_filter = ["state", "runbook"]
    search_fields = ["ticket__ticket_id", "host__name", "idempotency_key"]
    list_select_related = ["ticket", "host", "runbook"]
    # The argv lists as the command lines they are, not as JSON.
    exclude = ["argv", "rollback_argv"]
    readonly_fields = ["command", "rollback_command"]

    @admin.display(description="Command it runs")
    def command(self, obj: Execution) -> str:
        return format_html("<code>{}</code>", shlex.join(obj.argv)) if obj.argv else "-"

    @admin.display(description="Rollback command")
    def rollback_command(self, obj: Execution) -> str:
        return (
            format_html("<code>{}</code>", shlex.join(obj.rollback_argv))
            if obj.rollback_argv
            else "-"
        )

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
        return request.user.has_perm(permissions.SUPERVISE)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """What monitoring systems sent: read-only, as received (remediation.alerts)."""

    list_display = [
        "name",
        "ticket",
        "source",
        "status",
        "received_count",
        "first_received_at",
        "last_received_at",
    ]
    list_filter = ["source", "status"]
    search_fields = ["name", "fingerprint", "ticket__ticket_id", "ticket__host__name"]
    list_select_related = ["ticket"]
    date_hierarchy = "first_received_at"
