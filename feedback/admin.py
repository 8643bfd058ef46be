from django.contrib import admin
from django.db import transaction
from simple_history.admin import SimpleHistoryAdmin

from feedback import patterns
from feedback.models import Feedback, Pattern
from governance.audit import append_events, event, user_actor


@admin.register(Feedback)
class FeedbackAdmin(SimpleHistoryAdmin):
    list_display = ["ticket", "feedback_type", "rating", "submitted_by", "created_at"]
    list_filter = ["feedback_type", "rating"]
    search_fields = ["ticket__ticket_id", "comment"]
    list_select_related = ["ticket", "submitted_by"]
    readonly_fields = ["submitted_by"]

    def save_model(self, request, obj: Feedback, form, change: bool) -> None:
        if change:  # a verdict already counted on the pattern is not counted twice
            super().save_model(request, obj, form, change)
            return
        obj.submitted_by = request.user
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            patterns.record_feedback(obj.ticket, obj.feedback_type)
            append_events(
                [
                    event(
                        user_actor(request.user),
                        "feedback.given",
                        obj,
                        f"{obj.feedback_type} feedback on {obj.ticket.ticket_id}",
                        ticket_id=obj.ticket.ticket_id,
                        data={"rating": obj.rating},
                    )
                ]
            )


@admin.register(Pattern)
class PatternAdmin(SimpleHistoryAdmin):
    list_display = [
        "category",
        "key_terms",
        "occurrence_count",
        "eligible_for_auto_remediation",
        "last_seen_at",
    ]
    list_filter = ["category", "eligible_for_auto_remediation"]
