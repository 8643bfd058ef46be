"""Autonomy levels, policy modes, and approval states."""

from django.db import models


class AutonomyLevel(models.IntegerChoices):
    """PHASE-65's levels. L4 (full autonomy) is never allowed and has no choice here."""

    L0_MANUAL = 0, "L0 manual"
    L1_ASSISTED = 1, "L1 assisted (human approves)"
    L2_CONDITIONAL = 2, "L2 conditional (acts, human notified)"
    L3_BOUNDED = 3, "L3 bounded (acts within limits, human can override)"


class PolicyMode(models.TextChoices):
    ENFORCE = "enforce", "Enforce"
    SHADOW = "shadow", "Shadow (decide and record, execute nothing)"


class RiskLevel(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class SecuritySeverity(models.TextChoices):
    NONE = "none", "None"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"
