from django.contrib import admin

from feedback.models import Feedback, Pattern
from feedback.verdicts import edit_feedback, give_feedback
from governance.admin_governed import GovernedAdmin, ReadOnlyHistoryAdmin


@admin.register(Feedback)
class FeedbackAdmin(GovernedAdmin):
    list_display = ["ticket", "feedback_type", "rating", "submitted_by", "created_at"]
    list_filter = ["feedback_type", "rating"]
    search_fields = ["ticket__ticket_id", "comment"]
    list_select_related = ["ticket", "submitted_by"]
    reason_on_add = False  # the feedback is its own reason

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # A verdict counted on the pattern is not counted again, nor moved to another ticket.
        return ["submitted_by"] + (["ticket", "feedback_type"] if obj is not None else [])

    def save_governed(self, request, obj: Feedback, reason: str) -> None:
        if obj.pk is None:
            obj._history_user = request.user  # as SimpleHistoryAdmin.save_model does
            give_feedback(obj, user=request.user)
        else:
            edit_feedback(obj, user=request.user, reason=reason)


@admin.register(Pattern)
class PatternAdmin(ReadOnlyHistoryAdmin):
    """Learned from outcomes and feedback only: nobody edits the counts automation relies on."""

    list_display = [
        "category",
        "key_terms",
        "occurrence_count",
        "eligible_for_auto_remediation",
        "autonomy",
        "last_seen_at",
    ]
    list_filter = ["category", "eligible_for_auto_remediation"]
    list_select_related = ["autonomy"]

    @admin.display(description="Autonomy")
    def autonomy(self, obj: Pattern) -> str:
        # Lowered after failures or poor feedback (governance.promotions), else its policy's.
        lowered = getattr(obj, "autonomy", None)
        return f"L{lowered.autonomy_level} at most" if lowered else "its policy's"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
