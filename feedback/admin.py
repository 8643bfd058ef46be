from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from config.admin_actions import NeverDeleted
from feedback.models import Feedback, Pattern
from feedback.verdicts import give_feedback


@admin.register(Feedback)
class FeedbackAdmin(NeverDeleted, SimpleHistoryAdmin):
    list_display = ["ticket", "feedback_type", "rating", "submitted_by", "created_at"]
    list_filter = ["feedback_type", "rating"]
    search_fields = ["ticket__ticket_id", "comment"]
    list_select_related = ["ticket", "submitted_by"]
    readonly_fields = ["submitted_by"]

    def save_model(self, request, obj: Feedback, form, change: bool) -> None:
        if change:  # a verdict already counted on the pattern is not counted twice
            super().save_model(request, obj, form, change)
            return
        obj._history_user = request.user  # as SimpleHistoryAdmin.save_model does
        give_feedback(obj, user=request.user)


@admin.register(Pattern)
class PatternAdmin(NeverDeleted, SimpleHistoryAdmin):
    list_display = [
        "category",
        "key_terms",
        "occurrence_count",
        "eligible_for_auto_remediation",
        "last_seen_at",
    ]
    list_filter = ["category", "eligible_for_auto_remediation"]
