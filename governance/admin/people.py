"""People, roles and API tokens: access changes are governed changes too, recorded with a
reason (governance.people.actions). Tokens are issued with `manage.py create_api_token`
and revoked here or with `manage.py revoke_api_tokens`, each audited."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group, User
from django.utils import timezone
from knox.models import AuthToken

from config.admin_actions import NeverDeleted, confirmed_action
from governance.admin.base import ReasonForm
from governance.audit import permissions
from governance.audit.changes import REASON_FIELD
from governance.people.access import access_of, permissions_of
from governance.people.actions import record_access_change, record_group_change, revoke_api_token
from governance.people.onboarding import staff_missing
from governance.people.tracking import recorded_by_caller


class AuditedUserChangeForm(UserChangeForm):
    change_reason = ReasonForm.base_fields[REASON_FIELD]


class AuditedUserCreationForm(AdminUserCreationForm):
    change_reason = ReasonForm.base_fields[REASON_FIELD]


class AuditedGroupForm(forms.ModelForm):
    change_reason = ReasonForm.base_fields[REASON_FIELD]


REASON_FIELDSET = ("Why", {"fields": (REASON_FIELD,)})

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(NeverDeleted, UserAdmin):
    form = AuditedUserChangeForm
    add_form = AuditedUserCreationForm
    fieldsets = (*UserAdmin.fieldsets, REASON_FIELDSET)
    add_fieldsets = (*UserAdmin.add_fieldsets, REASON_FIELDSET)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The page records the whole change once, with its reason (save_related).
        with recorded_by_caller():
            return super().changeform_view(request, object_id, form_url, extra_context)

    # The change password page is recorded by governance.people.tracking, as the person
    # signed in: the password as a fact, never its hash.

    def save_model(self, request, obj, form, change) -> None:
        stored = User.objects.filter(pk=obj.pk).first() if change else None
        obj._access_before = access_of(stored)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        person = form.instance
        record_access_change(
            person,
            actor=request.user,
            reason=form.cleaned_data.get(REASON_FIELD),
            now=timezone.now(),
            before=person._access_before,
        )
        # Said, not fixed: staff status is access too, and the page records only what was
        # ticked (an admin may untick it on purpose, to keep someone out for a while).
        if staff_missing(person):
            messages.warning(
                request,
                f"{person.get_username()} is in a role but cannot sign in: the admin lets in "
                'staff only. Tick "Staff status" to let them in '
                "(manage.py add_person does it for you).",
            )


@admin.register(Group)
class AuditedGroupAdmin(NeverDeleted, GroupAdmin):
    form = AuditedGroupForm

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        with recorded_by_caller():
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        obj._permissions_before = permissions_of(obj) if change else None
        obj._name_before = form.initial.get("name", "") if change else ""
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        group = form.instance
        record_group_change(
            group,
            actor=request.user,
            reason=form.cleaned_data.get(REASON_FIELD),
            now=timezone.now(),
            before=group._permissions_before,
            renamed_from=group._name_before,
        )


# knox's own admin deletes tokens silently.
admin.site.unregister(AuthToken)


def _revoke_token(token: AuthToken, user: Any, note: str) -> str:
    revoke_api_token(token, actor=user, reason=note, now=timezone.now())
    return f"API token {token.token_key}… of {token.user.get_username()} revoked"


@admin.register(AuthToken)
class AuthTokenAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = ["token_key", "user", "created", "expiry"]
    list_select_related = ["user"]
    search_fields = ["user__username", "token_key"]
    fields = ["token_key", "user", "created", "expiry"]
    readonly_fields = fields
    actions = [
        confirmed_action(
            description="Revoke selected API tokens",
            verb="revoke",
            perform=_revoke_token,
            permissions=("revoke",),
        )
    ]

    def has_add_permission(self, request) -> bool:
        return False  # a token is shown once, by the command that issues it

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm(permissions.REVOKE_TOKEN)
