"""The task queue's schedules (django-q2's own page), each create, change and delete
recorded in the audit trail with its before and after (governance.audit.schedules)."""

from django import forms
from django.contrib import admin
from django.db import transaction
from django.utils import timezone
from django_q.admin import ScheduleAdmin
from django_q.models import Schedule

from governance.admin.base import ReasonForm
from governance.audit.changes import REASON_FIELD
from governance.audit.schedules import (
    record_schedule_change,
    record_schedule_deleted,
    schedule_of,
)

DELETED_IN_THE_ADMIN = "deleted on the admin's schedule page"


class AuditedScheduleForm(forms.ModelForm):
    change_reason = ReasonForm.base_fields[REASON_FIELD]

    class Meta:
        model = Schedule
        # django-q2's own page shows every field of a schedule; so does this one.
        fields = (
            "name",
            "func",
            "hook",
            "args",
            "kwargs",
            "schedule_type",
            "minutes",
            "repeats",
            "next_run",
            "cron",
            "cluster",
            "intended_date_kwarg",
        )


admin.site.unregister(Schedule)


@admin.register(Schedule)
class AuditedScheduleAdmin(ScheduleAdmin):
    form = AuditedScheduleForm

    def save_model(self, request, obj, form, change) -> None:
        before = schedule_of(Schedule.objects.filter(pk=obj.pk).first()) if change else {}
        super().save_model(request, obj, form, change)
        record_schedule_change(
            obj,
            actor=request.user,
            reason=form.cleaned_data.get(REASON_FIELD),
            now=timezone.now(),
            before=before,
        )

    def delete_model(self, request, obj) -> None:
        with transaction.atomic():
            record_schedule_deleted(
                obj, actor=request.user, reason=DELETED_IN_THE_ADMIN, now=timezone.now()
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            for schedule in queryset:
                record_schedule_deleted(
                    schedule, actor=request.user, reason=DELETED_IN_THE_ADMIN, now=timezone.now()
                )
            super().delete_queryset(request, queryset)
