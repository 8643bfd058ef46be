"""Admin actions that ask for confirmation and a note before calling a person's action."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from governance.audit.errors import Refused
from governance.audit.log import AuditUnavailable

# perform(obj, user, note) -> a message for the supervisor; raises to refuse one object.
Perform = Callable[[Any, Any, str], str]
# What an action raises to refuse: its own refusal, or the shared checks' (no reason given,
# no permission). Anything else is a bug, and surfaces as one.
REFUSALS = (Refused, ValidationError, PermissionDenied)


def confirmed_action(
    *,
    description: str,
    verb: str,
    perform: Perform,
    permissions: tuple[str, ...] = (),
    details_template: str = "",
    prepare: Callable[[Any], Any] | None = None,
) -> Callable:
    """Build an admin action: first a page listing the objects with a note box, then `perform`.

    With `details_template` the page shows each object through it (as `item`, after
    `prepare(obj)` when given): what the verb will do, not only the object's name."""

    @admin.action(description=description, permissions=list(permissions) or None)
    def action(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Model]
    ) -> HttpResponse | None:
        if request.POST.get("confirmed") == "yes":
            note = request.POST.get("note", "").strip()
            for obj in queryset:
                try:
                    text = perform(obj, request.user, note)
                except REFUSALS as exc:  # each refusal is shown; the others go ahead
                    modeladmin.message_user(
                        request, f"{obj}: {getattr(exc, 'message', exc)}", messages.ERROR
                    )
                else:
                    modeladmin.message_user(request, text, messages.SUCCESS)
            return None
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": description,
            "verb": verb,
            "objects": [prepare(obj) if prepare else obj for obj in queryset],
            "details_template": details_template,
            "action_name": request.POST.get("action"),
            "opts": modeladmin.model._meta,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "admin/confirm_action.html", context)

    action.__name__ = f"{verb.replace(' ', '_')}_action"
    return action


class NeverDeleted:
    """Admin mixin: governed rows are ended, retired or closed through their use cases,
    never deleted (a delete would erase the subject of their audit trail unrecorded); and a
    change the audit log cannot record is not made, with a message rather than an error."""

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        # The page's transaction has rolled back by the time this is caught.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        except AuditUnavailable as refused:
            self.message_user(request, refused.message, messages.ERROR)  # type: ignore[attr-defined]
            return HttpResponseRedirect(request.get_full_path())
