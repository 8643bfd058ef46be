from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from feedback.models import Feedback, Pattern


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["ticket", "feedback_type", "rating", "submitted_by", "created_at"]
    list_filter = ["feedback_type", "rating"]
    search_fields = ["ticket__ticket_id", "comment"]
    list_select_related = ["ticket", "submitted_by"]


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
