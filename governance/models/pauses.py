"""Pauses: the switches that stop automation for everything, one category or one host."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.timezone import now

from config.db_checks import checked_in_database
from config.history import PersonHistory
from remediation.choices import Category


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
