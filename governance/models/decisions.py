"""Decisions: what the engine decided for a ticket, stored whole."""

import shlex

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now

from config.db_checks import checked_in_database
from governance.choices import RiskLevel
from governance.models.policies import MAX_REQUIRED_APPROVALS, Policy
from governance.rules.labels import model_statement, outcome_label
from scoring.choices import Severity


@checked_in_database
class Decision(models.Model):
    """What the engine decided for a ticket, whole: outcome, reasons, checks, reliability."""

    ticket = models.ForeignKey(
        "remediation.Ticket", on_delete=models.CASCADE, related_name="decisions"
    )
    # The reading decided on. No foreign key in the database: samples are partitioned by
    # time on PostgreSQL (a key would have to name the partition's day too), and dropped
    # whole when kept long enough; retention empties this first (scoring.retention).
    sample = models.ForeignKey(
        "scoring.MetricSample",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    model_version = models.ForeignKey(
        "scoring.ModelVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, null=True, blank=True)
    policy_version = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The policy's history id when it decided."
    )
    runbook = models.ForeignKey(
        "remediation.Runbook", on_delete=models.PROTECT, null=True, blank=True
    )
    # Exactly what the decision would run: the runbook's history id, action and the exact
    # argv (its template filled from the ticket's parameters) as read when deciding, and
    # the argv's digest, which an approval binds to. An execution carries them; a later
    # edit of the runbook makes the claim refuse it (remediation.runbooks voids and
    # decides again), and the agent's report must name the same argv.
    runbook_version = models.PositiveBigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=100, blank=True)
    argv = models.JSONField(default=list, blank=True)
    rollback_argv = models.JSONField(default=list, blank=True)
    argv_digest = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=20)
    model_outcome = models.CharField(max_length=20)
    confidence = models.FloatField(
        default=0.0, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    allowed = models.BooleanField(default=False)
    requires_approval = models.BooleanField(default=False)
    required_approvals = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(MAX_REQUIRED_APPROVALS)]
    )
    action_type = models.CharField(max_length=20, blank=True)
    risk_level = models.CharField(max_length=10, choices=RiskLevel.choices, blank=True)
    shadow = models.BooleanField(default=False)
    reasons = models.JSONField(default=list)
    safety_checks = models.JSONField(default=dict)
    reliability = models.JSONField(default=dict, blank=True)
    explanation = models.JSONField(default=list, blank=True)
    # The model's probability for each class, in severity order; empty on decisions made
    # before they were recorded. `confidence` is the picked class's own.
    probabilities = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{outcome_label(self.outcome)} for {self.ticket.ticket_id}"

    @property
    def commands(self) -> list[str]:
        """The argv as people read it (one shell-quoted line)."""
        return [shlex.join(self.argv)] if self.argv else []

    def model_statement(self) -> str:
        """What the model said, as people read it: the class it picked, by which rule, and
        every class's probability (governance.rules.labels.model_statement)."""
        known = self.model_outcome in Severity.names
        severity = Severity[self.model_outcome].value if known else -1
        return model_statement(severity, self.confidence, self.probabilities, self.explanation)
