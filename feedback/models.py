"""Human feedback on tickets and the patterns learned from it."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from config.db_checks import checked_in_database
from config.history import PersonHistory
from remediation.choices import Category


class FeedbackType(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEGATIVE = "negative", "Negative"
    NEUTRAL = "neutral", "Neutral"


@checked_in_database
class Feedback(models.Model):
    """What a person thought of how a ticket was handled (the seed's feedback body)."""

    ticket = models.ForeignKey(
        "remediation.Ticket", on_delete=models.CASCADE, related_name="feedback"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    feedback_type = models.CharField(max_length=10, choices=FeedbackType.choices)
    rating = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    was_helpful = models.BooleanField(null=True, blank=True)
    resolution_accurate = models.BooleanField(null=True, blank=True)
    actions_worked = models.BooleanField(null=True, blank=True)
    comment = models.TextField(blank=True)
    what_worked = models.TextField(blank=True)
    what_didnt_work = models.TextField(blank=True)
    suggestions = models.TextField(blank=True)
    actual_resolution = models.TextField(blank=True)
    # What people actually did, when it was not (only) what Warden suggested: the seed's
    # list of actions, each a short text or an object such as {"action", "system"}.
    actual_actions_taken = models.JSONField(default=list, blank=True)
    time_to_resolve_minutes = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    history = PersonHistory()

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.feedback_type} feedback on ticket {self.ticket_id}"


@checked_in_database
class Pattern(models.Model):
    """A recurring kind of problem and how well remediating it has gone."""

    signature = models.CharField(max_length=64, unique=True)
    category = models.CharField(max_length=20, choices=Category.choices)
    key_terms = models.JSONField(default=list)
    occurrence_count = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    positive_count = models.PositiveIntegerField(default=0)
    negative_count = models.PositiveIntegerField(default=0)
    neutral_count = models.PositiveIntegerField(default=0)
    avg_confidence = models.FloatField(
        default=0.0, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    avg_reliability = models.FloatField(
        default=0.0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    auto_remediation_attempts = models.PositiveIntegerField(default=0)
    auto_remediation_successes = models.PositiveIntegerField(default=0)
    eligible_for_auto_remediation = models.BooleanField(default=False)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    history = PersonHistory()

    class Meta:
        ordering = ["-occurrence_count"]

    def __str__(self) -> str:
        return f"{self.category}: {', '.join(self.key_terms)}"
