"""The outbox: notices, the deliveries that carried them, and the notice links people used.

Read-only for everyone, in production too: the flow writes these rows (governance.notices),
and this is where a supervisor or compliance officer sees who was told what, by which
channel, when, and why something did not go out. A delivery that went to nobody (no one in
the role has an email, and no fixed address or webhook is set) says so, with what to fix.
"""

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from governance.admin.base import ReadOnlyAdmin, labelled
from governance.models import DeliveryStatus, Notice, NoticeDelivery, NoticeLinkUse

NOBODY_HINT = (
    "went out to nobody: no one who should hear of it has an email. Add an email to the "
    "people in the role (Users), or set WARDEN_NOTICE_EMAILS or WARDEN_SLACK_WEBHOOK_URL."
)


def went_to_nobody(delivery: NoticeDelivery) -> bool:
    """Finished as sent, yet neither emailed nor posted anywhere."""
    return (
        delivery.status == DeliveryStatus.SENT
        and not delivery.emailed
        and delivery.posted_at is None
    )


def _nobody() -> Q:
    return Q(status=DeliveryStatus.SENT, emailed=[], posted_at__isnull=True)


class ChannelFilter(admin.SimpleListFilter):
    """By how a delivery went out: email, the webhook, or nowhere at all."""

    title = "channel"
    parameter_name = "channel"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("email", "email"), ("webhook", "webhook"), ("nobody", "nobody (no address)")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "email":
            return queryset.exclude(emailed=[])
        if self.value() == "webhook":
            return queryset.filter(posted_at__isnull=False)
        if self.value() == "nobody":
            return queryset.filter(_nobody())
        return queryset


def _status(delivery: NoticeDelivery) -> SafeString:
    if went_to_nobody(delivery):
        return labelled("Sent to nobody", delivery.status)
    return labelled(delivery.get_status_display(), delivery.status)


@admin.register(NoticeDelivery)
class OutboxAdmin(ReadOnlyAdmin):
    """Each message out: one notice or a digest, with its recipients and how it went."""

    list_display = [
        "created_at",
        "what",
        "recipients",
        "channels",
        "status_label",
        "attempts",
        "finished_at",
        "error",
    ]
    list_filter = ["status", ChannelFilter, "kind", "digest"]
    # Recipients are the addresses it was emailed to (a JSON list: searched as its text).
    search_fields = ["emailed", "notices__host_name", "notices__ticket__ticket_id"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "what",
        "status_label",
        "recipients",
        "channels",
        "attempts",
        "finished_at",
        "last_error",
        "notices_told",
    ]
    readonly_fields = fields

    @admin.display(description="What", ordering="kind")
    def what(self, obj: NoticeDelivery) -> str:
        count = obj.notices.count()
        if obj.digest:
            return f"{obj.get_kind_display()} (digest of {count})"
        return obj.get_kind_display()

    @admin.display(description="Told")
    def recipients(self, obj: NoticeDelivery) -> str | SafeString:
        if went_to_nobody(obj):
            return format_html('<strong title="{}">nobody</strong>: {}', obj.status, NOBODY_HINT)
        if obj.emailed:
            return ", ".join(obj.emailed)
        if obj.status == DeliveryStatus.PENDING:
            return "not yet"
        return "-"

    @admin.display(description="Channel")
    def channels(self, obj: NoticeDelivery) -> str:
        used = (["email"] if obj.emailed else []) + (["webhook"] if obj.posted_at else [])
        return ", ".join(used) or "none"

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj: NoticeDelivery) -> SafeString:
        return _status(obj)

    @admin.display(description="Error")
    def error(self, obj: NoticeDelivery) -> str:
        return obj.last_error[:120] or "-"

    @admin.display(description="Notices it carried")
    def notices_told(self, obj: NoticeDelivery) -> SafeString:
        rows = [
            (
                reverse("admin:governance_notice_change", args=[notice.pk]),
                notice.get_kind_display(),
                notice.host_name or "-",
                notice.summary.splitlines()[0] if notice.summary else "",
            )
            for notice in obj.notices.all()
        ]
        if not rows:
            return format_html("{}", "none")
        items = format_html_join("", '<li><a href="{}">{}</a> on {}: {}</li>', rows)
        return format_html("<ul>{}</ul>", items)


@admin.register(Notice)
class NoticeAdmin(ReadOnlyAdmin):
    """What people were to be told, each with the delivery that carried it."""

    list_display = ["created_at", "kind", "host_name", "ticket", "summary_line", "delivery_state"]
    list_filter = [
        "kind",
        ("delivery__status", admin.AllValuesFieldListFilter),
    ]
    search_fields = ["host_name", "ticket__ticket_id", "summary", "delivery__emailed"]
    list_select_related = ["ticket", "delivery"]
    fields = [
        "created_at",
        "kind",
        "host_name",
        "ticket",
        "approval_request",
        "execution",
        "summary",
        "audit_sequence",
        "delivery_state",
    ]
    readonly_fields = fields

    @admin.display(description="What happened")
    def summary_line(self, obj: Notice) -> str:
        return obj.summary.splitlines()[0] if obj.summary else "-"

    @admin.display(description="Delivery", ordering="delivery__status")
    def delivery_state(self, obj: Notice) -> str | SafeString:
        delivery = obj.delivery
        if delivery is None:
            return "waiting to be gathered (others of its kind may join it)"
        url = reverse("admin:governance_noticedelivery_change", args=[delivery.pk])
        told = "nobody" if went_to_nobody(delivery) else ", ".join(delivery.emailed) or "-"
        return format_html('<a href="{}">{}</a>, told: {}', url, _status(delivery), told)


@admin.register(NoticeLinkUse)
class NoticeLinkUseAdmin(ReadOnlyAdmin):
    """Approve and reject links in notices, as people used them: each works once per person;
    a refused use says why."""

    list_display = ["used_at", "user", "verdict", "approval_request", "result", "outcome"]
    list_filter = ["verdict"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user", "approval_request"]

    @admin.display(description="Result")
    def result(self, obj: NoticeLinkUse) -> str:
        return "refused" if obj.outcome.startswith("refused") else "accepted"

    def get_readonly_fields(self, request, obj: Any = None) -> list[str]:
        return [field.name for field in NoticeLinkUse._meta.fields] + ["result"]
