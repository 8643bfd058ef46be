"""The feedback, pattern and stats bodies of the seed's API."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.models import Feedback, FeedbackType, Pattern
from feedback.patterns import auto_remediation_success_rate, is_eligible, positive_feedback_rate
from scoring.reliability import ReliabilityBreakdown

MAX_ACTIONS = 50


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "object"}]})
class ActualActionField(serializers.JSONField):
    """One action people took: a short text, or an object such as {"action", "system"}."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            if not data.strip() or len(data) > 500:
                raise serializers.ValidationError("Give the action in 1 to 500 characters.")
            return data
        if isinstance(data, dict) and data and all(isinstance(k, str) for k in data):
            if len(str(data)) > 2000:
                raise serializers.ValidationError("At most 2000 characters per action.")
            return data
        raise serializers.ValidationError("Give each action as text or as an object.")


class TextOrNull(serializers.CharField):
    """The seed sends null for an empty text ("what_didnt_work": null): stored as ""."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            required=False, allow_blank=True, allow_null=True, default="", max_length=10_000
        )

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            return True, ""
        return super().validate_empty_values(data)


class GiveFeedbackSerializer(serializers.Serializer):
    """The seed's feedback body, every field of it."""

    ticket_id = serializers.CharField(max_length=32)
    feedback_type = serializers.ChoiceField(choices=FeedbackType.choices)
    rating = serializers.IntegerField(
        min_value=1, max_value=5, required=False, allow_null=True, help_text="1-5 stars"
    )
    was_helpful = serializers.BooleanField(required=False, allow_null=True, default=None)
    resolution_accurate = serializers.BooleanField(required=False, allow_null=True, default=None)
    actions_worked = serializers.BooleanField(required=False, allow_null=True, default=None)
    comment = TextOrNull()
    what_worked = TextOrNull()
    what_didnt_work = TextOrNull()
    suggestions = TextOrNull()
    actual_resolution = TextOrNull()
    actual_actions_taken = serializers.ListField(
        child=ActualActionField(),
        required=False,
        default=list,
        max_length=MAX_ACTIONS,
        help_text="what people actually did, when the suggestion did not (only) do it",
    )
    time_to_resolve = serializers.FloatField(
        min_value=0, max_value=525_600, required=False, allow_null=True, help_text="minutes"
    )


class PatternSerializer(serializers.ModelSerializer):
    hash = serializers.CharField(source="signature")
    positive_feedback_rate = serializers.SerializerMethodField()
    auto_remediation_success_rate = serializers.SerializerMethodField()
    avg_reliability_score = serializers.FloatField(source="avg_reliability")
    eligible_for_auto_remediation = serializers.SerializerMethodField()

    class Meta:
        model = Pattern
        fields = [
            "id",
            "hash",
            "category",
            "key_terms",
            "occurrence_count",
            "success_count",
            "failure_count",
            "positive_count",
            "negative_count",
            "neutral_count",
            "positive_feedback_rate",
            "avg_confidence",
            "avg_reliability_score",
            "auto_remediation_attempts",
            "auto_remediation_successes",
            "auto_remediation_success_rate",
            "eligible_for_auto_remediation",
            "first_seen_at",
            "last_seen_at",
        ]

    @extend_schema_field(serializers.FloatField())
    def get_positive_feedback_rate(self, pattern: Pattern) -> float:
        return round(positive_feedback_rate(pattern), 4)

    @extend_schema_field(serializers.FloatField())
    def get_auto_remediation_success_rate(self, pattern: Pattern) -> float:
        return round(auto_remediation_success_rate(pattern), 4)

    @extend_schema_field(serializers.BooleanField())
    def get_eligible_for_auto_remediation(self, pattern: Pattern) -> bool:
        # Under today's thresholds (a global ceiling may have raised them since).
        return pattern.eligible_for_auto_remediation and is_eligible(pattern)


class ReliabilityFactorsSerializer(serializers.Serializer):
    """The seed's four factors, each 0-100."""

    ai_confidence = serializers.FloatField(help_text="the model's confidence (25%)")
    human_validation = serializers.FloatField(help_text="people's feedback (30%)")
    success_history = serializers.FloatField(help_text="the category's resolved share (25%)")
    pattern_recognition = serializers.FloatField(help_text="match to a known pattern (20%)")


class ReliabilitySerializer(serializers.Serializer):
    """A reliability score as the seed shows it (scoring/reliability.py computes it)."""

    overall_score = serializers.FloatField(help_text="0-100")
    confidence_level = serializers.ChoiceField(choices=["very_high", "high", "medium", "low"])
    breakdown = ReliabilityFactorsSerializer()


def reliability_json(score: ReliabilityBreakdown | None) -> dict | None:
    """`score` in ReliabilitySerializer's shape, with the seed's names for the factors."""
    if score is None:
        return None
    return {
        "overall_score": score.overall_score,
        "confidence_level": score.confidence_level,
        "breakdown": {
            "ai_confidence": score.ai_confidence,
            "human_validation": score.human_feedback,
            "success_history": score.success_history,
            "pattern_recognition": score.pattern_match,
        },
    }


class StoredFeedbackSerializer(serializers.ModelSerializer):
    ticket_id = serializers.CharField(source="ticket.ticket_id")
    # null once the user who gave it is deleted
    submitted_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    time_to_resolve = serializers.FloatField(source="time_to_resolve_minutes", allow_null=True)
    from_service = serializers.BooleanField(
        read_only=True,
        help_text="given by a service's account, not a person: weighed as the policy says",
    )
    superseded_by = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="the same giver's later verdict, if any"
    )

    class Meta:
        model = Feedback
        fields = [
            "id",
            "ticket_id",
            "feedback_type",
            "rating",
            "was_helpful",
            "resolution_accurate",
            "actions_worked",
            "comment",
            "what_worked",
            "what_didnt_work",
            "suggestions",
            "actual_resolution",
            "actual_actions_taken",
            "time_to_resolve",
            "submitted_by",
            "from_service",
            "created_at",
            "superseded_at",
            "superseded_by",
        ]


class FeedbackResultSerializer(StoredFeedbackSerializer):
    """The stored feedback, and what it moved at once: the ticket's reliability and pattern."""

    reliability_score = serializers.FloatField(
        allow_null=True, help_text="the ticket's reliability now, this feedback counted"
    )
    reliability_score_before = serializers.FloatField(allow_null=True)
    reliability_breakdown = ReliabilitySerializer(allow_null=True)
    pattern = PatternSerializer(allow_null=True, help_text="the ticket's pattern, counted")
    replaced = StoredFeedbackSerializer(
        allow_null=True,
        help_text="the giver's earlier verdict on the ticket this one replaced (answered 200), "
        "or null for their first (answered 201)",
    )

    class Meta(StoredFeedbackSerializer.Meta):
        fields = [
            *StoredFeedbackSerializer.Meta.fields,
            "replaced",
            "reliability_score",
            "reliability_score_before",
            "reliability_breakdown",
            "pattern",
        ]


class PeriodSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()


class CategoryReliabilitySerializer(serializers.Serializer):
    tickets = serializers.IntegerField()
    resolved = serializers.IntegerField()
    resolution_rate = serializers.FloatField(allow_null=True)
    avg_reliability_score = serializers.FloatField(allow_null=True)


class FeedbackStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    positive = serializers.IntegerField()
    negative = serializers.IntegerField()
    neutral = serializers.IntegerField()
    positive_feedback_rate = serializers.FloatField(allow_null=True)
    negative_feedback_rate = serializers.FloatField(allow_null=True)
    avg_rating = serializers.FloatField(allow_null=True)
    from_services = serializers.IntegerField(
        help_text="of them, given by service accounts rather than people"
    )


class ReliabilityStatsSerializer(PeriodSerializer):
    total_tickets = serializers.IntegerField(help_text="opened in the period")
    resolved_tickets = serializers.IntegerField()
    resolution_rate = serializers.FloatField(allow_null=True, help_text="resolved / opened")
    avg_reliability_score = serializers.FloatField(
        allow_null=True, help_text="each ticket's latest decision's"
    )
    avg_confidence_score = serializers.FloatField(allow_null=True)
    confidence_levels = serializers.DictField(child=serializers.IntegerField())
    by_category = serializers.DictField(child=CategoryReliabilitySerializer())
    feedback = FeedbackStatsSerializer(help_text="feedback given in the period")


class PatternStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    eligible_patterns = serializers.IntegerField()
    pattern_success_rate = serializers.FloatField(allow_null=True)


class AutoRemediationStatsSerializer(PeriodSerializer):
    total_tickets = serializers.IntegerField(help_text="opened in the period")
    auto_remediation_enabled_tickets = serializers.IntegerField()
    auto_remediated_tickets = serializers.IntegerField(
        help_text="enabled tickets on which an automatic execution started"
    )
    execution_rate = serializers.FloatField(
        allow_null=True, help_text="auto-remediated / enabled tickets"
    )
    automatic_executions = serializers.IntegerField()
    automatic_executions_finished = serializers.IntegerField()
    automatic_executions_succeeded = serializers.IntegerField()
    success_rate = serializers.FloatField(
        allow_null=True, help_text="succeeded / finished automatic executions"
    )
    decisions_allowing_a_runbook = serializers.IntegerField()
    decisions_requiring_approval = serializers.IntegerField()
    approval_rate = serializers.FloatField(
        allow_null=True,
        help_text="decisions that needed a person's approval / those that let a runbook run",
    )
    approval_requests = serializers.DictField(
        child=serializers.IntegerField(), help_text="created in the period, by status"
    )
    patterns = PatternStatsSerializer(help_text="as they stand now")
