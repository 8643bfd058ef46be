"""Approval requests for risky remediations, and each person's verdict on one."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from config.db_checks import checked_in_database
from config.history import PersonHistory
from governance.models.decisions import Decision
from governance.models.policies import MAX_REQUIRED_APPROVALS


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
