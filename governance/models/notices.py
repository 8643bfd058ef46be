"""Notices: what people are told, the deliveries that carry them, and used notice links."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from config.db_checks import checked_in_database
from governance.models.approvals import ApprovalRequest, Verdict


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

    Written after the change commits (governance.notices.plans.record_notices); waits for others
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
