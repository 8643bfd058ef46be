"""The audit log: read-only, newest first, its chain verified and its rows exported from
the changelist's filters."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path

from governance.admin.base import ReadOnlyAdmin, cut, labelled, labelled_filter
from governance.audit import permissions, signing
from governance.audit.checkpoints import CheckpointRefused
from governance.audit.log import verify_audit_log
from governance.exports.records import FORMATS, prepare
from governance.models import AuditCheckpoint, AuditEvent
from governance.rules import labels


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    # Fits 1280 px beside the menu and the filter: a short number column, who beside what.
    list_display = ["number", "created_at", "event", "ticket_id", "short_summary", "actor"]
    list_filter = [
        labelled_filter("action", "event", labels.event_label),
        labelled_filter("object_type", "object", labels.object_type_label),
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["ticket_id", "summary", "actor"]
    date_hierarchy = "created_at"
    fields = [
        "sequence",
        "created_at",
        "actor",
        "event",
        "action",
        "ticket_id",
        "object_type",
        "object_id",
        "summary",
        "data",
        "prev_hash",
        "hash",
    ]
    readonly_fields = ["event"]
    ordering = ["-sequence"]  # newest first: what happened last is what people look for
    actions = ["verify_whole_chain"]
    change_list_template = "admin/governance/auditevent/change_list.html"

    @admin.display(description="#", ordering="sequence")
    def number(self, obj: AuditEvent) -> int:
        return obj.sequence

    @admin.display(description="Event", ordering="action")
    def event(self, obj: AuditEvent) -> str:
        return labelled(labels.event_label(obj.action), obj.action)

    @admin.display(description="Summary")
    def short_summary(self, obj: AuditEvent) -> str:
        return cut(obj.summary, 110)

    @admin.action(description="Verify the whole audit chain")
    def verify_whole_chain(self, request, queryset) -> None:
        report = verify_audit_log()  # the same check as `manage.py verify_audit`
        self.message_user(
            request, report.line, messages.SUCCESS if report.intact else messages.ERROR
        )

    def get_urls(self):
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="governance_auditevent_export",
        )
        return [export, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra = {
            "may_export": request.user.has_perm(permissions.EXPORT_AUDIT),
            "export_formats": list(FORMATS),
            "export_query": request.GET.urlencode(),
            "signing_key_id": signing.current_key_id(),
            "last_checkpoint": AuditCheckpoint.objects.order_by("-tree_size").first(),
        }
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def export_view(self, request):
        """The changelist's filtered rows (filters, date, search), streamed in a format."""
        if not request.user.has_perm(permissions.EXPORT_AUDIT):
            raise PermissionDenied
        query = request.GET.copy()
        fmt = query.pop("export_format", ["csv"])[-1]
        if fmt not in FORMATS:
            return HttpResponseBadRequest(f"export_format: choose one of {', '.join(FORMATS)}")
        request.GET = query
        changelist = self.get_changelist_instance(request)
        events = changelist.get_queryset(request)
        try:
            export = prepare(events, fmt, changelist_filter(query))
        except CheckpointRefused as refused:
            return HttpResponse(refused.message, status=503, content_type="text/plain")
        response = StreamingHttpResponse(export.chunks(), content_type=FORMATS[fmt])
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response


# The changelist's query parameters as the export's signed statement says its filter.
ADMIN_FILTER_NAMES = {
    "action__exact": "action",
    "object_type__exact": "object type",
    "created_at__gte": "since",
    "created_at__lt": "until",
    "created_at__year": "year",
    "created_at__month": "month",
    "created_at__day": "day",
    "q": "search",
}


def changelist_filter(query) -> dict[str, str]:
    """{"action": "ticket.opened", "since": "2026-12-01"}: what narrowed the list (the
    sort order and the page do not)."""
    described = {}
    for name, value in query.items():
        if name in ("o", "p", "all", "_changelist_filters") or not value:
            continue
        label = ADMIN_FILTER_NAMES.get(name, name.removesuffix("__exact"))
        described[label] = value[:10] if label in ("since", "until") else value
    return described
