"""Hosts and their agents, the runbook catalogue, tickets and executions."""

import hashlib
import re
import secrets
import shlex
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from config.db_checks import checked_in_database
from config.history import PersonHistory
from config.outbound import validate_outbound_url
from remediation.choices import (
    EXECUTION_TRANSITIONS,
    NO_HOST_YET,
    TICKET_OPEN_STATUSES,
    TICKET_TRANSITIONS,
    ActionType,
    Category,
    ExecutionState,
    Priority,
    TicketStatus,
    VerifiedBy,
    check_transition,
)
from scoring.choices import Severity
from scoring.features import Reading
from scoring.samples import clock_is_off, describe_skew
from warden_agent.argv import ArgvError, is_placeholder, placeholders

API_KEY_PREFIX = "wdn_"


def hash_api_key(key: str) -> str:
    """SHA-256 of an agent key: the keys are 256 random bits, so a fast hash is safe."""
    return hashlib.sha256(key.encode()).hexdigest()


HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@checked_in_database
class Host(models.Model):
    name = models.CharField(
        max_length=253,
        unique=True,
        validators=[
            RegexValidator(HOST_NAME, "A host name has letters, digits, dots and dashes only.")
        ],
    )
    # Only the hash is stored; the key is shown once, when the host is added.
    api_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    api_key_prefix = models.CharField(max_length=16, editable=False)
    labels = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The newest stored sample: its time (newer samples cannot be resent ones, so a
    # batch past it is stored without looking for duplicates) and its metrics in
    # scoring.features.METRIC_NAMES order (the next sample's deltas are taken from them).
    last_sample_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_metrics = models.JSONField(null=True, blank=True, editable=False)
    # What the host's agent says it will run ({action: argv template}), as it last reported
    # it: a ceiling, never a substitute for what was decided. Audited when it changes.
    allowlist = models.JSONField("allow-list", default=dict, blank=True, editable=False)
    allowlist_digest = models.CharField(
        "allow-list digest", max_length=64, blank=True, editable=False
    )
    allowlist_reported_at = models.DateTimeField(
        "allow-list reported at", null=True, blank=True, editable=False
    )
    agent_version = models.CharField(max_length=50, blank=True, editable=False)
    # How far the agent's clock is from the server's (seconds, negative: behind), as its
    # latest batch measured it, and when: readings are judged on the server's clock.
    clock_skew_seconds = models.FloatField(null=True, blank=True, editable=False)
    clock_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = PersonHistory(
        excluded_fields=[
            "last_seen_at",
            "last_sample_at",
            "last_metrics",
            "clock_skew_seconds",
            "clock_checked_at",
            "allowlist",
            "allowlist_digest",
            "allowlist_reported_at",
            "agent_version",
        ]
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def clock_is_off(self) -> bool:
        """Is its clock off by more than WARDEN_CLOCK_SKEW_FLAG_SECONDS (flagged)?"""
        return clock_is_off(self.clock_skew_seconds)

    @property
    def clock_skew(self) -> str:
        """ "10 min behind": how far its clock is from the server's ("" if not measured)."""
        return "" if self.clock_skew_seconds is None else describe_skew(self.clock_skew_seconds)

    def newest_reading(self) -> Reading | None:
        """The newest stored sample's metrics, as kept on the row (no sample query)."""
        if self.last_sample_at is None or not self.last_metrics:
            return None
        disk, memory, cpu, dns, firewall = self.last_metrics
        return Reading(self.name, self.last_sample_at, disk, memory, cpu, dns, int(firewall))

    def set_new_api_key(self) -> str:
        """Give the host a fresh key; returns the key, which is not stored anywhere."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        self.api_key_hash = hash_api_key(key)
        self.api_key_prefix = key[: len(API_KEY_PREFIX) + 6]
        return key


class HandoffKind(models.TextChoices):
    AWX = "awx", "AWX job template launch"
    RUNDECK = "rundeck", "Rundeck job run"
    STACKSTORM = "stackstorm", "StackStorm webhook"
    WEBHOOK = "webhook", "Signed JSON webhook"


# The only variables an automation target may name: under this prefix, which none of
# Warden's own settings uses, so no target can have Warden send its secret key, audit key,
# database or mail URL to the launch URL a supervisor typed (remediation.handoff reads them).
TARGET_ENV_PREFIX = "WARDEN_TARGET_"
TARGET_ENV = RegexValidator(
    rf"^{TARGET_ENV_PREFIX}[A-Z0-9_]{{1,86}}$",
    f"Name a variable under {TARGET_ENV_PREFIX}, such as {TARGET_ENV_PREFIX}AWX_TOKEN "
    "(capitals, digits and '_'): a target may not read Warden's own settings.",
)


@checked_in_database
class AutomationTarget(models.Model):
    """An automation system people already run (AWX, Rundeck, StackStorm, a webhook) that
    runs a runbook's action instead of the host's agent (remediation.handoff).

    Its secrets stay in the environment of the processes, never in the database or its
    history: the fields name the variables that hold them.
    """

    name = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(max_length=20, choices=HandoffKind.choices)
    url = models.URLField(
        "launch URL",
        max_length=500,
        validators=[validate_outbound_url],
        help_text="The launch URL: AWX …/api/v2/job_templates/ID/launch/, Rundeck "
        "…/api/41/job/UUID/run, StackStorm …/api/v1/webhooks/NAME, or any URL for a webhook "
        "(https in production; inside addresses only where WARDEN_OUTBOUND_ALLOWED_NETWORKS "
        "allows them, checked at each hand-off).",
    )
    credential_env = models.CharField(
        "API token variable",
        max_length=100,
        blank=True,
        validators=[TARGET_ENV],
        help_text=f"Environment variable ({TARGET_ENV_PREFIX}…) with the system's API token "
        "(AWX: Bearer token; "
        "Rundeck: X-Rundeck-Auth-Token; StackStorm: St2-Api-Key; webhook: Bearer token).",
    )
    secret_env = models.CharField(
        "signing secret variable",
        max_length=100,
        validators=[TARGET_ENV],
        help_text=f"Environment variable ({TARGET_ENV_PREFIX}…) with the shared secret: Warden "
        "signs each request "
        "with it (HMAC-SHA256) and accepts only callbacks signed with it.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=900,
        validators=[MinValueValidator(30), MaxValueValidator(86_400)],
        help_text="How long the system has to call back before the host's metrics decide.",
    )
    enabled = models.BooleanField(default=True)

    history = PersonHistory()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


@checked_in_database
class Runbook(models.Model):
    """An allow-listed action an agent may run, with its risk class and rollback."""

    name = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    category = models.CharField(max_length=20, choices=Category.choices)
    action = models.CharField(max_length=100, help_text="Action name the agent runs.")
    rollback_action = models.CharField(max_length=100, blank=True)
    action_type = models.CharField(max_length=20, choices=ActionType.choices)
    system = models.CharField(max_length=50, default="linux")
    reversible = models.BooleanField(default=True)
    argv = models.JSONField(
        "command",
        default=list,
        blank=True,
        help_text="The exact command the host's agent runs, as a list: program, then each "
        "argument (no shell). A whole argument {name:type} is filled from the ticket's "
        "parameters (types: ip, port, unit, word). Empty only when an automation system runs it.",
    )
    rollback_argv = models.JSONField(
        "rollback command",
        default=list,
        blank=True,
        help_text="The exact command that undoes it, in the same form.",
    )
    touches = models.JSONField(
        default=list, blank=True, help_text="Forbidden areas it touches (always need a person)."
    )
    blast_radius = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    # Who runs it: the host's agent (empty), or an automation system (remediation.handoff).
    handoff_target = models.ForeignKey(
        AutomationTarget,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="runbooks",
        verbose_name="run by",
        help_text="Empty: the host's agent runs it. Else this automation system does.",
    )

    history = PersonHistory()

    class Meta:
        ordering = ["category", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_rollback_plan(self) -> bool:
        return bool(self.rollback_action)

    def clean(self) -> None:
        errors = {}
        for field in ("argv", "rollback_argv"):
            problem = argv_problem(getattr(self, field))
            if problem:
                errors[field] = problem
        if not self.argv and self.handoff_target_id is None and "argv" not in errors:
            errors["argv"] = "The host's agent runs it: say exactly what it runs."
        if bool(self.rollback_action) != bool(self.rollback_argv):
            errors["rollback_argv"] = (
                "A rollback needs both its action name and its command, or neither."
            )
        if errors:
            raise ValidationError(errors)

    @property
    def commands(self) -> list[str]:
        """The command as people read it (one shell-quoted line); argv is what runs."""
        return shown(self.argv)


def argv_problem(argv: object) -> str:
    """Why `argv` is not a runnable command template (a list of strings whose placeholders
    have known types), or ""."""
    if not isinstance(argv, list) or not all(isinstance(arg, str) and arg for arg in argv):
        return "A list of non-empty strings: the program, then each argument."
    if argv and "{" in argv[0]:
        return "The program itself cannot be a parameter."
    try:
        placeholders(argv)
    except ArgvError as exc:
        return str(exc)
    return ""


def shown(argv: list[str]) -> list[str]:
    """An argv as one shell-quoted line for people to read, or none; a template's
    {name:type} placeholders are left bare, as people write them."""
    if not argv:
        return []
    return [" ".join(arg if is_placeholder(arg) else shlex.quote(arg) for arg in argv)]


class Counter(models.Model):
    """Named counters for human-readable ids (INC-000123) on SQLite, taken under a row lock.

    PostgreSQL numbers tickets from a sequence instead (remediation.metric_tickets.next_ticket_id),
    which no transaction waits for.
    """

    name = models.CharField(max_length=50, primary_key=True)
    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class TicketSource(models.TextChoices):
    METRICS = "metrics", "Agent metrics"
    INTEGRATOR = "integrator", "Integrator"
    # Opened through remediation.intake by an alert receiver (Alertmanager, webhooks).
    ALERT = "alert", "Alert"


@checked_in_database
class Ticket(models.Model):
    """The unit of remediation work: one open per host and category, repeats counted on it."""

    ticket_id = models.CharField(max_length=32, unique=True, editable=False)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Null: a ticket in people's words that names no registered host yet; it waits
    # (escalated) for a person to name one, and is never decided before that.
    host = models.ForeignKey(
        Host, on_delete=models.PROTECT, null=True, blank=True, related_name="tickets"
    )
    # Blank only while a ticket in people's words waits for its triage to read one from
    # its text (or for a person to pick one); never decided without one.
    category = models.CharField(max_length=20, choices=Category.choices, blank=True)
    source = models.CharField(
        max_length=20, choices=TicketSource.choices, default=TicketSource.METRICS
    )
    status = models.CharField(
        max_length=20, choices=TicketStatus.choices, default=TicketStatus.OPEN
    )
    severity = models.PositiveSmallIntegerField(
        default=0, choices=Severity.choices, help_text="Highest severity seen."
    )
    confidence = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Model confidence at the last sample.",
    )
    occurrence_count = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    # Metric tickets opt in; a ticket another system opens is off unless its caller asks.
    enable_auto_remediation = models.BooleanField(default=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    affects_billing = models.BooleanField(default=False)
    data_integrity = models.BooleanField(default=False)
    security_severity = models.CharField(max_length=10, default="none")
    customer_impact_minutes = models.FloatField(default=0.0)
    # Values a runbook's command takes ({name:type} arguments: the address to block, the
    # port to rate-limit), from the alert or the system that opened the ticket.
    parameters = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now, editable=False)
    # The person behind the session or token that opened it (null: an agent's metrics, an
    # alert or the system). Never one of its approvers (governance.approvals).
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)
    # The learned pattern the ticket was counted on when first decided (feedback.patterns).
    pattern = models.ForeignKey(
        "feedback.Pattern", on_delete=models.SET_NULL, null=True, blank=True, related_name="tickets"
    )
    pattern_similarity = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    # What the text triage said (remediation.triage): the suggested category and runbook
    # with their confidence, the alternatives, the model version ("no model" when none was
    # approved), the similar incidents and the host the text named; {} until triaged.
    triage = models.JSONField(default=dict, blank=True, editable=False)
    triaged_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = PersonHistory(excluded_fields=["last_seen_at", "confidence"])

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "category"],
                condition=Q(status__in=sorted(TICKET_OPEN_STATUSES)),
                name="one_open_ticket_per_host_category",
            )
        ]
        indexes = [models.Index(fields=["status", "category"])]

    def __str__(self) -> str:
        return self.ticket_id

    @property
    def host_name(self) -> str:
        """The host's name, or the words people read while none is named."""
        return self.host.name if self.host_id else NO_HOST_YET

    @property
    def is_open(self) -> bool:
        return self.status in TICKET_OPEN_STATUSES

    def move_to(self, status: str, now: datetime | None = None) -> None:
        """Change status through the transition table; illegal moves raise."""
        check_transition(TICKET_TRANSITIONS, self.status, status)
        self.status = status
        if status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            # The caller's clock: success history is read by this timestamp.
            self.resolved_at = now or timezone.now()


@checked_in_database
class Execution(models.Model):
    """One run of a runbook on a host. This row, not the queue, is the truth.

    The idempotency key is unique, so the same decision or approval never
    creates two executions; the fencing token changes on every claim, so a
    stale agent cannot report over a newer claim.
    """

    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="executions")
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="executions")
    runbook = models.ForeignKey(Runbook, on_delete=models.PROTECT, related_name="executions")
    decision = models.ForeignKey(
        "governance.Decision", on_delete=models.PROTECT, null=True, blank=True
    )
    approval_request = models.ForeignKey(
        "governance.ApprovalRequest", on_delete=models.PROTECT, null=True, blank=True
    )
    idempotency_key = models.CharField(max_length=100, unique=True)
    # What was decided and approved, copied when queued: the agent is told these, never
    # the runbook's current text; a claim refuses them once the runbook has moved on.
    runbook_version = models.PositiveBigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=100, blank=True)
    rollback_action = models.CharField(max_length=100, blank=True)
    # The exact commands decided (the agent must run and report these, byte for byte).
    argv = models.JSONField(default=list, blank=True)
    rollback_argv = models.JSONField(default=list, blank=True)
    argv_digest = models.CharField(max_length=64, blank=True)
    state = models.CharField(
        max_length=20, choices=ExecutionState.choices, default=ExecutionState.QUEUED
    )
    # When the state last changed: the sweeper times every unfinished state out from it.
    state_changed_at = models.DateTimeField(default=timezone.now)
    cancel_reason = models.CharField(max_length=500, blank=True)
    # Held for a check that time can pass (blast radius, time window, rate limit): why,
    # and when it is given up on (cancelled, people told). Empty for a pause's hold.
    hold_reason = models.CharField(max_length=500, blank=True)
    hold_until = models.DateTimeField(null=True, blank=True)
    fencing_token = models.PositiveBigIntegerField(default=0)
    # Claimed: when the agent must have said it started (the ack window); started: when the
    # runner's lease runs out.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # How often its agent took the current run (or rollback) without saying it started.
    offers = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # When the runner said it started (the agent's start, a hand-off's claim); None while
    # nothing ran. Only readings after it verify the fix.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    verify_deadline = models.DateTimeField(null=True, blank=True)
    verify_samples_seen = models.PositiveSmallIntegerField(default=0)
    # What judged whether the fix worked: only the host's own readings earn its automation
    # credit (feedback.patterns); an alert's resolution resolves the ticket, nothing more.
    verified_by = models.CharField(
        max_length=10, choices=VerifiedBy.choices, blank=True, default=""
    )
    output = models.TextField(blank=True)
    rollback_output = models.TextField(blank=True)
    # The exit codes the agent reported with the argv it ran (null: nothing ran, or an
    # automation system ran it and reports no code).
    exit_code = models.SmallIntegerField(null=True, blank=True)
    rollback_exit_code = models.SmallIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    # Who runs it, copied from the runbook when queued; empty: the host's agent.
    handoff_target = models.ForeignKey(
        AutomationTarget, on_delete=models.PROTECT, null=True, blank=True
    )
    # The automation system's own id of the job it launched (AWX job, Rundeck execution).
    remote_reference = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The agent's poll and the sweeper look executions up by state.
            models.Index(fields=["host", "state"]),
            models.Index(fields=["state", "enqueued_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.runbook.name} on {self.host.name} ({self.state})"

    @property
    def commands(self) -> list[str]:
        return shown(self.argv)

    def move_to(self, state: str, now: datetime | None = None) -> None:
        """Change state through the transition table; illegal moves raise."""
        check_transition(EXECUTION_TRANSITIONS, self.state, state)
        self.state = state
        self.state_changed_at = now or timezone.now()


class AlertSource(models.TextChoices):
    ALERTMANAGER = "alertmanager", "Alertmanager"
    WEBHOOK = "webhook", "JSON webhook"


# Tickets alerts open are numbered in a namespace of their own, AM-... and WH-...
# (remediation.alerts): nobody else may open a ticket with such an id (remediation.intake),
# so an alert never meets a ticket another system made under the id it would use.
ALERT_TICKET_PREFIXES = {AlertSource.ALERTMANAGER: "AM-", AlertSource.WEBHOOK: "WH-"}


def in_alert_namespace(ticket_id: str) -> bool:
    """Is `ticket_id` (in any letter case) one an alert's ticket could carry?"""
    return ticket_id.upper().startswith(tuple(ALERT_TICKET_PREFIXES.values()))


class AlertStatus(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


@checked_in_database
class Alert(models.Model):
    """An alert another monitoring system sent, counted on the ticket it belongs to.

    One row per alert (its source's fingerprint) and ticket: a re-delivery of the same
    alert counts here, not on the ticket; the same alert firing again after its ticket
    closed starts a new ticket and a new row (remediation.alerts).
    """

    source = models.CharField(max_length=20, choices=AlertSource.choices)
    fingerprint = models.CharField(max_length=128)
    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="alerts")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=AlertStatus.choices)
    labels = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    link = models.CharField(max_length=500, blank=True, help_text="Where the alert came from.")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    first_received_at = models.DateTimeField()
    last_received_at = models.DateTimeField()
    received_count = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["-last_received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "fingerprint", "ticket"], name="one_alert_row_per_ticket"
            )
        ]
        indexes = [models.Index(fields=["source", "fingerprint"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_source_display()} {self.fingerprint})"
