"""What every room's admin page builds on: labels with the codes they stand for, read-only
pages, and governed pages whose every add, edit and history revert asks for a reason and
saves through the model's action; nothing is deleted.

django-simple-history's revert page saves whatever is posted to it once the user may
*view* history; here a POST needs the change permission, the model must allow reverts
at all, and the revert is saved by the same action as an edit, field by field onto
the current row (a historic row also carries fields no form shows, such as an old
agent key or a ticket's old status, which a revert must never bring back).
"""

import copy
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.forms.models import construct_instance
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from simple_history.admin import SimpleHistoryAdmin

from config.admin_actions import NeverDeleted
from governance.audit.changes import REASON_FIELD


def labelled(label: str, code: Any) -> SafeString:
    """A label to read, with the code it stands for on hover (to search the audit or API)."""
    return format_html('<span title="{}">{}</span>', code, label)


def cut(text: str, length: int = 90) -> SafeString:
    """`text` cut to `length` characters for a list's cell, the whole of it on hover."""
    if len(text) <= length:
        return format_html("{}", text)
    return format_html('<span title="{}">{}\u2026</span>', text, text[: length - 1].rstrip())


def labelled_filter(
    field: str, title: str, label: Callable[[Any], str]
) -> type[admin.SimpleListFilter]:
    """A list filter on `field` offering the values stored, each by its label.

    Its parameter is Django's own (`field__exact`), so links and exports made with the
    plain field filter keep working.
    """

    class LabelledFilter(admin.SimpleListFilter):
        parameter_name = f"{field}__exact"

        def lookups(self, request, model_admin) -> list[tuple[str, str]]:
            values = model_admin.get_queryset(request).order_by().values_list(field, flat=True)
            return sorted(((str(v), label(v)) for v in values.distinct()), key=lambda o: o[1])

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    LabelledFilter.title = title
    return LabelledFilter


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the flow writes (decisions, the audit log): shown, never added, changed or
    deleted here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def given_reason(form: Any) -> str:
    """The reason typed into a governed page's form ("" if none: the action decides)."""
    return form.cleaned_data.get(REASON_FIELD, "")


class ReasonForm(forms.ModelForm):
    """A model form with the reason the action records in the audit trail. Required here
    so the page asks for it; the action is what refuses a change without one."""

    change_reason = forms.CharField(
        label="Reason for this change",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Required. Recorded in the audit trail with who changed what.",
    )


class GovernedAdmin(NeverDeleted, SimpleHistoryAdmin):
    """Admin for a governed model. A subclass saves through its action in `save_model`
    (Django's hook, which the history revert page calls too): the row from `row_to_save`,
    the reason from `given_reason`."""

    form = ReasonForm
    revert_allowed = True  # False: history pages are read-only for this model
    reason_on_add = True  # False: an added row says why by itself (feedback)

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        raise NotImplementedError(f"{type(self).__name__} must save through its action")

    def row_to_save(self, obj: Model, form: Any, change: bool) -> Model:
        """What the action saves: on an add, `obj`; on an edit or a revert, the current row
        (locked) with only the fields the form edits (see the module's note). The form's
        many-to-many fields are then saved onto it."""
        if change:
            current = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
            obj = construct_instance(form, current, fields=list(form.base_fields))
            form.instance = obj
        return obj

    def get_form(self, request: HttpRequest, obj: Model | None = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        if obj is None and not self.reason_on_add and REASON_FIELD in form.base_fields:
            optional = copy.deepcopy(form.base_fields[REASON_FIELD])  # shared with ReasonForm
            optional.required = False
            form.base_fields[REASON_FIELD] = optional
        return form

    def history_form_view(
        self,
        request: HttpRequest,
        object_id: str,
        version_id: str,
        extra_context: dict | None = None,
    ) -> HttpResponse:
        if request.method == "POST":
            obj = self.get_object(request, unquote(object_id))
            if not (self.revert_allowed and self.has_change_permission(request, obj)):
                raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def revert_disabled(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return not (self.revert_allowed and self.has_change_permission(request, obj))


class ReadOnlyHistoryAdmin(NeverDeleted, SimpleHistoryAdmin):
    """History shown, never reverted: the model changes only through its verbs (actions)."""

    def history_form_view(
        self,
        request: HttpRequest,
        object_id: str,
        version_id: str,
        extra_context: dict | None = None,
    ) -> HttpResponse:
        if request.method == "POST":
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def revert_disabled(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True
