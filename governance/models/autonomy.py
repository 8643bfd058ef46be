"""Autonomy earned and lost: a lowered pattern's level, and proposals of one step more."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from config.db_checks import checked_in_database
from config.history import PersonHistory
from governance.choices import AutonomyLevel
from governance.models.policies import Policy


@checked_in_database
class PatternAutonomy(models.Model):
    """How far a learned pattern may act by itself since it was lowered (governance.promotions).

    A cap on its policy's level: a pattern lowered to L1 asks a person whatever its policy
    allows, until proposals accepted one step at a time raise it again. A pattern without a
    row follows its policy.
    """

    pattern = models.OneToOneField(
        "feedback.Pattern", on_delete=models.PROTECT, related_name="autonomy"
    )
    autonomy_level = models.PositiveSmallIntegerField(
        choices=AutonomyLevel.choices,
        default=AutonomyLevel.L1_ASSISTED,
        validators=[MinValueValidator(AutonomyLevel.L1_ASSISTED)],
    )
    # When it reached this level: its track record for the next step starts here.
    changed_at = models.DateTimeField(default=now)
    reason = models.CharField(max_length=500)

    history = PersonHistory()

    class Meta:
        verbose_name_plural = "pattern autonomy"

    def __str__(self) -> str:
        return f"pattern {self.pattern_id} at L{self.autonomy_level}"


class ProposalChange(models.TextChoices):
    RAISE_LEVEL = "raise_level", "One autonomy level up"
    DROP_APPROVAL = "drop_approval", "Approval no longer needed"


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACCEPTED = "accepted", "Accepted"
    DISMISSED = "dismissed", "Dismissed"
    # Its policy or pattern changed, or no longer has the numbers: a newer one may follow.
    SUPERSEDED = "superseded", "Superseded"


@checked_in_database
class AutonomyProposal(models.Model):
    """A track record that earned one step more autonomy, waiting for a supervisor's click.

    Made by governance.promotions.proposals.propose_promotions with the numbers behind it;
    accepted (the step is applied through the policy's or pattern's action) or dismissed by
    a person (governance.promotions.actions), or superseded when its target changed first.
    """

    policy = models.ForeignKey(
        Policy, on_delete=models.PROTECT, null=True, blank=True, related_name="proposals"
    )
    pattern = models.ForeignKey(
        "feedback.Pattern",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="autonomy_proposals",
    )
    change = models.CharField(max_length=20, choices=ProposalChange.choices)
    from_level = models.PositiveSmallIntegerField(choices=AutonomyLevel.choices)
    to_level = models.PositiveSmallIntegerField(choices=AutonomyLevel.choices)
    numbers = models.JSONField(default=dict, blank=True)
    # Who stands behind the numbers: the people and service accounts whose feedback and
    # approvals they rest on, how the fixes were verified, and what that lacks
    # (governance.promotions.records.backing).
    backing = models.JSONField(default=dict, blank=True)
    # The version (history id) of the policy, or of the pattern's level, the numbers were
    # computed on: accepting refuses if it changed since, even if it now looks the same.
    target_version = models.PositiveBigIntegerField(null=True, blank=True)
    summary = models.CharField(max_length=500)
    status = models.CharField(
        max_length=12, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED
    )
    created_at = models.DateTimeField(default=now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(policy__isnull=False, pattern__isnull=True)
                | Q(policy__isnull=True, pattern__isnull=False),
                name="proposal_has_one_target",
            ),
            # One step: a level up, or at the same level no approval (policies only).
            models.CheckConstraint(
                condition=Q(change="raise_level", to_level=models.F("from_level") + 1)
                | Q(change="drop_approval", to_level=models.F("from_level"), pattern__isnull=True),
                name="proposal_is_one_step",
            ),
            models.CheckConstraint(
                condition=Q(status="proposed", decided_at__isnull=True)
                | (~Q(status="proposed") & Q(decided_at__isnull=False)),
                name="proposal_decided_when_closed",
            ),
            models.UniqueConstraint(
                fields=["policy"],
                condition=Q(status="proposed"),
                name="one_open_proposal_per_policy",
            ),
            models.UniqueConstraint(
                fields=["pattern"],
                condition=Q(status="proposed"),
                name="one_open_proposal_per_pattern",
            ),
        ]
        indexes = [
            # the admin's and the attention panel's open proposals
            models.Index(
                fields=["created_at"], condition=Q(status="proposed"), name="open_proposals"
            )
        ]

    def __str__(self) -> str:
        return f"{self.target_name()}: {self.step_label()}"

    def target_name(self) -> str:
        if self.policy_id:
            return f"policy {self.policy.name}"
        return f"pattern {self.pattern}"

    def step_label(self) -> str:
        if self.change == ProposalChange.DROP_APPROVAL:
            return f"L{self.from_level}, approval no longer needed"
        return f"L{self.from_level} to L{self.to_level}"
