"""Pauses: taken on the add page, ended by the resume action; never edited or deleted."""

from django.contrib import admin
from django.utils import timezone

from config.admin_actions import confirmed_action
from governance.admin.base import ReadOnlyHistoryAdmin
from governance.models import Pause
from governance.pauses.actions import pause_automation, resume_pause
from governance.pauses.state import active_pauses, is_active


def _resume(pause: Pause, user, note: str) -> str:
    resume_pause(pause, actor=user, reason=note, now=timezone.now())
    return f"Resumed: {pause.describe()}"


class PauseStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("active", "Holding automation"), ("ended", "Resumed or lapsed")]

    def queryset(self, request, queryset):
        active = active_pauses(timezone.now()).values("pk")
        if self.value() == "active":
            return queryset.filter(pk__in=active)
        if self.value() == "ended":
            return queryset.exclude(pk__in=active)
        return queryset


@admin.register(Pause)
class PauseAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "__str__",
        "holding",
        "scope",
        "category",
        "host",
        "created_at",
        "ends_at",
        "resumed_at",
        "resumed_by",
    ]
    list_filter = [PauseStateFilter, "scope", "category"]
    list_select_related = ["host", "created_by", "resumed_by"]
    fields = ["scope", "category", "host", "reason", "ends_at"]
    actions = [
        confirmed_action(
            description="Resume automation",
            verb="resume",
            perform=_resume,
            permissions=("change",),
        )
    ]

    @admin.display(boolean=True, description="Holding automation")
    def holding(self, obj: Pause) -> bool:
        return is_active(obj, timezone.now())

    def has_change_permission(self, request, obj=None) -> bool:
        # A pause is never edited, only resumed: the change permission gates the action.
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        # Through the action, so the pause is audited like every other switch.
        pause_automation(obj, actor=request.user, reason=obj.reason, now=timezone.now())
