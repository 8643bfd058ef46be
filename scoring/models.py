"""Metric samples and the versioned model registries (severity, and text triage)."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from config.db_checks import checked_in_database
from config.history import PersonHistory
from scoring.choices import ModelStatus, Severity
from scoring.features import Reading

PERCENT = [MinValueValidator(0), MaxValueValidator(100)]


class RegisteredVersion(models.Model):
    """What every versioned model records: its artifact, its figures, and who approved it."""

    version = models.PositiveIntegerField(unique=True)
    status = models.CharField(
        max_length=20, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE
    )
    algorithm = models.CharField(max_length=100)
    artifact = models.CharField(max_length=255, help_text="File name in WARDEN_MODEL_DIR.")
    sha256 = models.CharField(max_length=64)
    thresholds = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"v{self.version} ({self.status})"


@checked_in_database
class ModelVersion(RegisteredVersion):
    """A trained severity model. Only the one approved version serves."""

    feature_names = models.JSONField(default=list)
    class_weights = models.JSONField(default=dict, blank=True)
    feature_distribution = models.JSONField(default=dict, blank=True)
    confusion_matrix_svg = models.TextField(blank=True)

    history = PersonHistory()

    class Meta(RegisteredVersion.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status=ModelStatus.APPROVED),
                name="one_approved_model_version",
            )
        ]


@checked_in_database
class TriageModelVersion(RegisteredVersion):
    """A trained text triage model (scoring.triage). Only the one approved version serves.

    `thresholds` holds its abstention rule (scoring.triage.model.Rule); `comparison` what
    re-scoring recent tickets with it beside the serving version found, `progress` how far
    its training or re-scoring task has come (scoring.triage.tasks).
    """

    # Drift's reference: the held-out texts' unknown-word share and best similarity.
    text_reference = models.JSONField(default=dict, blank=True)
    comparison = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True)

    history = PersonHistory()

    class Meta(RegisteredVersion.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status=ModelStatus.APPROVED),
                name="one_approved_triage_model_version",
            )
        ]


@checked_in_database
class MetricSample(models.Model):
    """One reading from an agent, with the model's verdict on it."""

    # No index of its own: the unique host and instant serves a host's samples.
    host = models.ForeignKey(
        "remediation.Host", on_delete=models.CASCADE, related_name="samples", db_index=False
    )
    # On PostgreSQL the table is partitioned by day of taken_at (scoring/partitions.py):
    # the unique host and instant includes it, so a resent sample is refused in any
    # partition, and old days are dropped whole.
    taken_at = models.DateTimeField()
    # The server's clock: when the batch arrived, and when the reading was taken (the stamp
    # corrected by the host's measured skew; scoring.samples). Null: stored before that.
    received_at = models.DateTimeField(default=timezone.now)
    observed_at = models.DateTimeField(null=True, blank=True)
    disk_usage = models.FloatField(validators=PERCENT)
    memory_usage = models.FloatField(validators=PERCENT)
    cpu_usage = models.FloatField(validators=PERCENT)
    dns_latency_ms = models.FloatField(validators=[MinValueValidator(0)])
    firewall_change_requested = models.BooleanField(default=False)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices)
    confidence = models.FloatField(validators=[MinValueValidator(0), MaxValueValidator(1)])
    category = models.CharField(max_length=20, blank=True)
    # Every problem the sample shows, `category` first (scoring.inference): a fix is
    # verified against its own category even where another problem masks it.
    categories = models.JSONField(default=list, blank=True)
    explanation = models.JSONField(default=list, blank=True)
    # No index: nothing looks samples up by version (versions are retired, never deleted),
    # and every insert would pay for one.
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    ticket = models.ForeignKey(
        "remediation.Ticket",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="samples",
    )

    class Meta:
        ordering = ["-taken_at"]
        constraints = [
            # A resent sample is acknowledged, never stored twice; also a host's history.
            models.UniqueConstraint(fields=["host", "taken_at"], name="one_sample_per_host_instant")
        ]
        indexes = [
            # The admin's list, newest first, and pruning by age on SQLite.
            models.Index(fields=["taken_at"], name="scoring_sample_taken_at"),
        ]

    def __str__(self) -> str:
        return f"{self.host_id} @ {self.taken_at:%Y-%m-%d %H:%M:%S}"

    def as_reading(self, host_name: str) -> Reading:
        """The sample as the feature builder reads it (the caller knows the host's name)."""
        return Reading(
            host=host_name,
            taken_at=self.taken_at,
            disk_usage=self.disk_usage,
            memory_usage=self.memory_usage,
            cpu_usage=self.cpu_usage,
            dns_latency_ms=self.dns_latency_ms,
            firewall_change_requested=int(self.firewall_change_requested),
        )


@checked_in_database
class SampleMinute(models.Model):
    """A host's readings in one minute on the server's clock (scoring.samples.observed_at),
    kept longer than the samples: what the console's sparklines, drift and a host's page
    read. Written with the samples, in their transaction (scoring.minutes).

    Lowest, highest and sum (the mean is sum / samples) of each measured metric; the
    worst class; and the minute's newest reading as the model saw it (`last_features`,
    in scoring.features.FEATURE_NAMES order, deltas included), which drift reads.
    """

    host = models.ForeignKey(
        "remediation.Host", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # On PostgreSQL the table is partitioned by week of minute (scoring/partitions.py).
    minute = models.DateTimeField()
    samples = models.PositiveIntegerField()
    disk_min = models.FloatField()
    disk_max = models.FloatField()
    disk_sum = models.FloatField()
    memory_min = models.FloatField()
    memory_max = models.FloatField()
    memory_sum = models.FloatField()
    cpu_min = models.FloatField()
    cpu_max = models.FloatField()
    cpu_sum = models.FloatField()
    dns_min = models.FloatField()
    dns_max = models.FloatField()
    dns_sum = models.FloatField()
    worst_severity = models.PositiveSmallIntegerField(choices=Severity.choices)
    last_at = models.DateTimeField()
    last_severity = models.PositiveSmallIntegerField(choices=Severity.choices)
    last_features = models.JSONField(default=list)

    class Meta:
        ordering = ["-minute"]
        constraints = [
            # One row per host and minute, merged into by every batch; also a host's page.
            models.UniqueConstraint(fields=["host", "minute"], name="one_summary_per_host_minute")
        ]
        indexes = [
            # The console's last hour and drift's newest minutes, across hosts.
            models.Index(fields=["minute"], name="scoring_minute_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.host_id} @ {self.minute:%Y-%m-%d %H:%M}"

    def mean(self, metric: str) -> float:
        """The minute's mean of `metric` ("disk", "memory", "cpu" or "dns")."""
        return getattr(self, f"{metric}_sum") / self.samples
