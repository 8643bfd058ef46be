"""Policies: how autonomously Warden may act on each category, and the bounds they keep.

The admin edits a Policy through governance.policies.actions; the engine reads it as a
governance.rules.facts.PolicySnapshot (governance.decisions.facts.policy_snapshot).
"""

from functools import cache
from zoneinfo import available_timezones

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from config.db_checks import checked_in_database
from config.history import PersonHistory
from governance.choices import AutonomyLevel, PolicyMode
from remediation.choices import ActionType, Category

# available_timezones() walks the whole time-zone database on each call (tens of ms, more on
# a busy disk); the zones installed do not change while a process runs.
known_timezones = cache(available_timezones)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# One message for every way an autonomy level can be refused: the field's choice check
# (model and admin form) and the validator. L4 is PHASE-65's "not allowed" level.
AUTONOMY_LEVEL_REFUSED = (
    "Autonomy level L%(value)s is not allowed: Warden runs at L0-L3 only "
    "(L4, full autonomy, is always refused)."
)


# Bounds the database holds too (config/db_checks.py): more approvers than a team has would
# leave a request pending for ever; more actions an hour than this is no limit at all.
MAX_REQUIRED_APPROVALS = 10
MAX_ACTIONS_PER_HOUR = 10_000


def validate_autonomy_level(value: int) -> None:
    if value not in AutonomyLevel.values:
        raise ValidationError(
            AUTONOMY_LEVEL_REFUSED, code="invalid_choice", params={"value": value}
        )


@checked_in_database
class Policy(models.Model):
    """How autonomously Warden may act on one category (the seed's AutoRemediationPolicy)."""

    name = models.SlugField(max_length=100, unique=True)
    category = models.CharField(max_length=20, choices=Category.choices)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    mode = models.CharField(max_length=10, choices=PolicyMode.choices, default=PolicyMode.ENFORCE)
    autonomy_level = models.PositiveSmallIntegerField(
        choices=AutonomyLevel.choices,
        default=AutonomyLevel.L1_ASSISTED,
        validators=[validate_autonomy_level],
        # The choice check runs before the validator, so it must say why too.
        error_messages={"invalid_choice": AUTONOMY_LEVEL_REFUSED},
    )
    min_confidence_score = models.FloatField(
        default=0.85, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    min_reliability_score = models.FloatField(
        default=80.0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    min_similar_tickets = models.PositiveIntegerField(default=0)
    min_positive_feedback_rate = models.FloatField(
        default=0.0, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    min_auto_confidence_escalation = models.FloatField(
        default=0.6, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    allowed_action_types = models.JSONField(default=list, blank=True)
    allowed_systems = models.JSONField(default=list, blank=True)
    forbidden_commands = models.JSONField(default=list, blank=True)
    allowed_hours_start = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(23)]
    )
    allowed_hours_end = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(24)]
    )
    allowed_days = models.JSONField(default=list, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    requires_approval = models.BooleanField(default=True)
    auto_approve_threshold = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    approvers = models.JSONField(default=list, blank=True)
    required_approvals = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_REQUIRED_APPROVALS)]
    )
    critical_required_approvals = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(MAX_REQUIRED_APPROVALS)]
    )
    max_actions_per_hour = models.PositiveIntegerField(
        default=10, validators=[MaxValueValidator(MAX_ACTIONS_PER_HOUR)]
    )
    requires_rollback_plan = models.BooleanField(default=True)
    requires_backup = models.BooleanField(default=False)
    blast_radius_max_hosts = models.PositiveIntegerField(null=True, blank=True)
    blast_radius_max_percent = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    blast_radius_label = models.CharField(max_length=100, blank=True)
    customer_impact_sla_minutes = models.FloatField(null=True, blank=True)
    # How much a service's feedback (an integrator's token, not a person) weighs beside a
    # person's verdict, 0-1: by default it informs but earns no autonomy.
    service_feedback_weight = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="0: a service's feedback earns no autonomy; 1: it weighs as a person's",
    )
    created_at = models.DateTimeField(default=now, editable=False)

    history = PersonHistory()

    class Meta:
        verbose_name_plural = "policies"
        ordering = ["category", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["category"],
                condition=Q(enabled=True),
                name="one_enabled_policy_per_category",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        # A bare string would be read letter by letter ("rm" as "r" and "m"), silently
        # switching a safety list off: each of these must be a list of non-empty names.
        for name in ("allowed_action_types", "allowed_systems", "forbidden_commands",
                     "allowed_days", "approvers"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, list) or not all(
                isinstance(item, str) and item.strip() for item in value
            ):
                errors[name] = 'Give a list of names, for example ["a", "b"].'
        if "allowed_action_types" not in errors:
            unknown = sorted(set(self.allowed_action_types) - set(ActionType.values))
            if unknown:
                errors["allowed_action_types"] = (
                    f"Unknown action types: {', '.join(unknown)} "
                    f"(known: {', '.join(ActionType.values)})."
                )
        if self.timezone not in known_timezones():
            errors["timezone"] = f"Unknown time zone {self.timezone!r}."
        if "allowed_days" not in errors:
            unknown_days = sorted(set(self.allowed_days) - set(WEEKDAYS))
            if unknown_days:
                errors["allowed_days"] = f"Unknown days: {', '.join(unknown_days)}."
        if (self.allowed_hours_start is None) != (self.allowed_hours_end is None):
            errors["allowed_hours_end"] = "Give both allowed hours, or neither."
        if self.blast_radius_label and "=" not in self.blast_radius_label:
            errors["blast_radius_label"] = "Write the label as key=value."
        if errors:
            raise ValidationError(errors)
