"""Policies, pauses, decisions, approvals and the hash-chained audit log."""

import shlex
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from config.db_checks import checked_in_database
from config.history import PersonHistory
from governance.choices import AutonomyLevel, PolicyMode, RiskLevel
from governance.rules.labels import model_statement, outcome_label
from remediation.choices import ActionType, Category
from scoring.choices import Severity

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
        if self.timezone not in available_timezones():
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


class PauseScope(models.TextChoices):
    ALL = "all", "All automation"
    CATEGORY = "category", "One category"
    HOST = "host", "One host"


@checked_in_database
class Pause(models.Model):
    """A switch that stops automation for everything, a category or a host."""

    scope = models.CharField(max_length=10, choices=PauseScope.choices)
    category = models.CharField(max_length=20, choices=Category.choices, blank=True)
    host = models.ForeignKey("remediation.Host", on_delete=models.CASCADE, null=True, blank=True)
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=now, editable=False)
    ends_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # When the sweeper recorded that the pause ran out at ends_at (audited then).
    lapsed_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = PersonHistory()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        target = {
            PauseScope.ALL: "all automation",
            PauseScope.CATEGORY: f"category {self.category}",
            PauseScope.HOST: f"host {self.host.name if self.host_id else '?'}",
        }[self.scope]
        who = self.created_by.get_username() if self.created_by_id else "system"
        return f"{target} paused by {who}: {self.reason}"

    def clean(self) -> None:
        if self.scope == PauseScope.CATEGORY and not self.category:
            raise ValidationError({"category": "Name the category to pause."})
        if self.scope == PauseScope.HOST and not self.host_id:
            raise ValidationError({"host": "Name the host to pause."})
        # A pause that ends before it starts would look taken while holding nothing.
        if self.ends_at is not None and self.ends_at <= self.created_at:
            raise ValidationError({"ends_at": "The pause must end after it starts."})


@checked_in_database
class Decision(models.Model):
    """What the engine decided for a ticket, whole: outcome, reasons, checks, reliability."""

    ticket = models.ForeignKey(
        "remediation.Ticket", on_delete=models.CASCADE, related_name="decisions"
    )
    sample = models.ForeignKey(
        "scoring.MetricSample", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
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


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    # What it asked to run changed, or the host no longer shows the problem: nobody may
    # approve the old request, and the ticket is decided again.
    VOIDED = "voided", "Voided"


@checked_in_database
class ApprovalRequest(models.Model):
    """A risky remediation waiting for people; critical ones need two approvers."""

    ticket = models.ForeignKey(
        "remediation.Ticket", on_delete=models.CASCADE, related_name="approval_requests"
    )
    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, null=True, blank=True)
    runbook = models.ForeignKey("remediation.Runbook", on_delete=models.PROTECT)
    # The runbook version people are asked to approve (the decision's); an approval
    # binds to it and to the readings the decision was made on (decision.sample).
    runbook_version = models.PositiveBigIntegerField(null=True, blank=True)
    # The digest of the exact argv people are shown and approve (the decision's): an
    # execution whose argv has another digest is refused at dispatch and at the claim.
    argv_digest = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    required_approvals = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_REQUIRED_APPROVALS)]
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=now, editable=False)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=500, blank=True)

    history = PersonHistory()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket"],
                condition=Q(status="pending"),
                name="one_pending_approval_per_ticket",
            )
        ]
        permissions = [("approve_approvalrequest", "Can approve or reject remediations")]

    def __str__(self) -> str:
        return f"{self.runbook.name} for {self.ticket.ticket_id} ({self.status})"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


@checked_in_database
class Approval(models.Model):
    """One person's verdict on an approval request."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["request", "approver"], name="one_verdict_per_approver")
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.approver_id}"


class AuditChainHead(models.Model):
    """The last link of the audit chain; locked once per transaction that appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain head #{self.sequence}"


class AuditEvent(models.Model):
    """One state change, hash-chained to the one before: tampering breaks the chain."""

    sequence = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    ticket_id = models.CharField(max_length=32, blank=True, db_index=True)
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["sequence"]
        permissions = [("export_auditevent", "Can export the audit trail")]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action}"


class NoticeKind(models.TextChoices):
    """What people are told about (governance.notices); the label is the message's title."""

    APPROVAL_REQUESTED = "approval_requested", "Approval needed"
    ESCALATED = "escalated", "Escalated to people"
    L2_ACTION = "l2_action", "Acted at L2 (people notified)"
    ACTION_FAILED = "action_failed", "Action failed"
    VERIFICATION_FAILED = "verification_failed", "Verification failed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed"
    AUTONOMY_LOWERED = "autonomy_lowered", "Autonomy lowered to L1"
    # Work that may start held for a check time can pass (blast radius, time window).
    HELD = "held", "Waiting for its checks to pass"
    # What Warden did by itself, for people to review (governance.promotions.reviews): one notice
    # each at L2, one digest at L3.
    L2_REVIEW = "l2_review", "Acted at L2, to review"
    L3_REVIEW = "l3_review", "Acted at L3, to review"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    # Still failing after WARDEN_NOTICE_MAX_ATTEMPTS: logged, and no longer retried.
    FAILED = "failed", "Failed"


@checked_in_database
class NoticeDelivery(models.Model):
    """One message out, by email and webhook: one notice, or a digest of a storm.

    Each address it was emailed to and the webhook post are marked as they go, so a
    retry sends only what is left; the lease keeps two workers from sending it at once.
    """

    kind = models.CharField(max_length=30, choices=NoticeKind.choices)
    digest = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    created_at = models.DateTimeField(default=now)
    emailed = models.JSONField(default=list, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "notice deliveries"
        indexes = [
            # deliver_due's look for unfinished deliveries
            models.Index(
                fields=["created_at"],
                condition=Q(status="pending"),
                name="notice_delivery_pending",
            )
        ]

    def __str__(self) -> str:
        what = "digest" if self.digest else "notice"
        return f"{self.get_kind_display()} {what} ({self.status})"


@checked_in_database
class Notice(models.Model):
    """One thing people must be told, from the audit events of one ticket in one transaction.

    Written after the change commits (governance.notices.delivery.record_notices); waits for others
    of its kind, then goes out alone or in a digest (`delivery`).
    """

    kind = models.CharField(max_length=30, choices=NoticeKind.choices)
    # The first audit event it tells of: one notice per event, however often the hook runs.
    audit_sequence = models.PositiveBigIntegerField(unique=True)
    ticket = models.ForeignKey(
        "remediation.Ticket", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    approval_request = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    execution = models.ForeignKey(
        "remediation.Execution", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    host_name = models.CharField(max_length=253, blank=True)
    # What happened, in the audit events' own words (one line each).
    summary = models.TextField(blank=True)
    created_at = models.DateTimeField(default=now)
    delivery = models.ForeignKey(
        NoticeDelivery,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notices",
    )

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            # deliver_due's look for notices not yet gathered into a delivery
            models.Index(
                fields=["kind", "created_at"],
                condition=Q(delivery__isnull=True),
                name="notice_waiting",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.host_name or '-'}"


@checked_in_database
class NoticeLinkUse(models.Model):
    """A notice's approve or reject link, used: each link works once per person.

    The database refuses a second use (unique nonce and user), whichever process tries.
    """

    nonce = models.CharField(max_length=32)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approval_request = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, related_name="+"
    )
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    used_at = models.DateTimeField(default=now)
    outcome = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-used_at"]
        constraints = [
            models.UniqueConstraint(fields=["nonce", "user"], name="notice_link_used_once")
        ]

    def __str__(self) -> str:
        return f"{self.verdict} link {self.nonce[:8]} used by {self.user_id}"


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

    Made by governance.promotions.actions.propose_promotions with the numbers behind it; accepted
    (the step is applied through the policy's or pattern's use case) or dismissed by a
    person, or superseded when its target changed first.
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
