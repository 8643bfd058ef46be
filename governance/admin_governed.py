"""The admin side of governance.audit.changes: every add, edit and history revert of a governed
row asks for a reason and goes through the model's use case; nothing is deleted.

django-simple-history's revert page saves whatever is posted to it once the user may
*view* history; here a POST needs the change permission, the model must allow reverts
at all, and the revert is saved by the same use case as an edit, field by field onto
the current row (a historic row also carries fields no form shows, such as an old
agent key or a ticket's old status, which a revert must never bring back).
"""

import copy
from typing import Any

from django import forms
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.forms.models import construct_instance
from django.http import HttpRequest, HttpResponse
from simple_history.admin import SimpleHistoryAdmin

from config.admin_actions import NeverDeleted
from governance.audit.changes import REASON_FIELD


class ReasonForm(forms.ModelForm):
    """A model form with the reason the use case records in the audit trail."""

    change_reason = forms.CharField(
        label="Reason for this change",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Required. Recorded in the audit trail with who changed what.",
    )


class GovernedAdmin(NeverDeleted, SimpleHistoryAdmin):
    """Admin for a governed model: subclasses name their use case in `save_governed`."""

    form = ReasonForm
    revert_allowed = True  # False: history pages are read-only for this model
    reason_on_add = True  # False: an added row says why by itself (feedback)

    def save_governed(self, request: HttpRequest, obj: Model, reason: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} must save through its use case")

    def get_form(self, request: HttpRequest, obj: Model | None = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        if obj is None and not self.reason_on_add and REASON_FIELD in form.base_fields:
            optional = copy.deepcopy(form.base_fields[REASON_FIELD])  # shared with ReasonForm
            optional.required = False
            form.base_fields[REASON_FIELD] = optional
        return form

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        if change:
            # Onto the current row, only the fields the form edits (see the module's note).
            current = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
            obj = construct_instance(form, current, fields=list(form.base_fields))
        self.save_governed(request, obj, form.cleaned_data.get(REASON_FIELD, ""))
        form.instance = obj

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
