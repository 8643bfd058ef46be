"""Human feedback on tickets, the patterns learned from it, and people's reviews of what
Warden did by itself."""

from datetime import datetime

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from config.db_checks import checked_in_database
from config.history import PersonHistory
from governance.choices import AutonomyLevel
from remediation.choices import Category, ExecutionState


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
    # Given by a service's account (an integrator's token, any account in a service role),
    # not a person: it informs, and earns autonomy only as far as the policy weighs it
    # (Policy.service_feedback_weight).
    from_service = models.BooleanField(default=False, editable=False)
    # One verdict per person per ticket: a later one replaces it. The replaced row is kept,
    # marked, so nothing said is lost; only the current one (superseded_at empty) counts.
    superseded_at = models.DateTimeField(null=True, blank=True, editable=False)
    superseded_by = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="replaces",
    )

    history = PersonHistory()

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "submitted_by"],
                condition=Q(superseded_at__isnull=True),
                name="one_current_verdict_per_person_per_ticket",
            ),
            # Replaced by a later verdict means at a time.
            models.CheckConstraint(
                condition=Q(superseded_by__isnull=True) | Q(superseded_at__isnull=False),
                name="feedback_superseded_at_a_time",
            ),
        ]
        indexes = [
            # Reliability's window: the category's current verdicts by time.
            models.Index(
                fields=["created_at"],
                condition=Q(superseded_at__isnull=True),
                name="feedback_current_by_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.feedback_type} feedback on ticket {self.ticket_id}"


@checked_in_database
class Pattern(models.Model):
    """A recurring kind of problem and how well remediating it has gone."""

    signature = models.CharField(max_length=64, unique=True)
    category = models.CharField(max_length=20, choices=Category.choices)
    key_terms = models.JSONField(default=list)
    # The mean of its tickets' text and readings vectors (feedback.patterns): side ->
    # {feature: weight}, the heaviest entries only; and how many tickets it averages.
    centroid = models.JSONField(default=dict, blank=True)
    centroid_members = models.PositiveIntegerField(default=0)
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

    # The centroid is bookkeeping recomputed at every ticket: kept out of the history.
    history = PersonHistory(excluded_fields=["centroid"])

    class Meta:
        ordering = ["-occurrence_count"]

    def __str__(self) -> str:
        return f"{self.category}: {', '.join(self.key_terms)}"


class ReviewStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    FLAGGED = "flagged", "Flagged"


# The levels Warden acts at by itself (governance.choices.AutonomyLevel): only these are
# reviewed after the fact; below them a person approved before anything ran.
REVIEWED_LEVELS = [
    (AutonomyLevel.L2_CONDITIONAL.value, "L2 (acts, people notified)"),
    (AutonomyLevel.L3_BOUNDED.value, "L3 (acts within limits, digest)"),
]
# Where an execution ends: what a review looks at.
FINAL_OUTCOMES = [
    (state.value, state.label)
    for state in (
        ExecutionState.SUCCEEDED,
        ExecutionState.FAILED,
        ExecutionState.ROLLED_BACK,
        ExecutionState.ROLLBACK_FAILED,
    )
]


@checked_in_database
class PostActionReview(models.Model):
    """A person's look at one action Warden took by itself (PHASE-65's oversight).

    Opened when an automatic execution at L2 or L3 ends (governance.promotions.reviews.open_review),
    due some hours later; a person acknowledges it, or flags it with a reason, which is
    negative feedback on the ticket. Never deleted: it is the record that people looked.
    """

    execution = models.OneToOneField(
        "remediation.Execution", on_delete=models.PROTECT, related_name="review"
    )
    autonomy_level = models.PositiveSmallIntegerField(choices=REVIEWED_LEVELS)
    # The execution's state when the review opened (a failed one may be rolled back after).
    outcome = models.CharField(max_length=20, choices=FINAL_OUTCOMES)
    opened_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=20, choices=ReviewStatus.choices, default=ReviewStatus.OPEN
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # The acknowledgement's note, or why it was flagged.
    note = models.TextField(blank=True)
    # A flag's negative feedback on the ticket (counted on its pattern).
    feedback = models.OneToOneField(
        Feedback, on_delete=models.PROTECT, null=True, blank=True, related_name="review"
    )

    class Meta:
        verbose_name = "post-action review"
        ordering = ["due_at", "pk"]
        permissions = [
            ("review_postactionreview", "Can acknowledge or flag what Warden did by itself")
        ]
        indexes = [
            # The console's and the dashboard's overdue count: open reviews by due time.
            models.Index(fields=["status", "due_at"], name="review_open_due"),
        ]
        constraints = [
            # Reviewed means by someone, at some time; open means by nobody yet.
            models.CheckConstraint(
                condition=(
                    Q(status=ReviewStatus.OPEN, reviewed_by__isnull=True, reviewed_at__isnull=True)
                    | (
                        ~Q(status=ReviewStatus.OPEN)
                        & Q(reviewed_by__isnull=False, reviewed_at__isnull=False)
                    )
                ),
                name="review_reviewed_by_a_person",
            ),
            # A flag says why, and counts as the ticket's negative feedback.
            models.CheckConstraint(
                condition=~Q(status=ReviewStatus.FLAGGED)
                | (~Q(note="") & Q(feedback__isnull=False)),
                name="review_flag_has_reason_and_feedback",
            ),
        ]

    def __str__(self) -> str:
        execution = self.execution
        return (
            f"Review of {execution.runbook.name} on {execution.host.name} "
            f"({execution.ticket.ticket_id}, {self.get_status_display().lower()})"
        )

    def is_overdue(self, now: datetime) -> bool:
        return self.status == ReviewStatus.OPEN and self.due_at <= now
