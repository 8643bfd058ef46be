"""The severity classes the model predicts; also the outcomes a decision can take."""

from django.db import models


class Severity(models.IntegerChoices):
    NO_ACTION = 0, "NO_ACTION"
    AUTO_HEAL = 1, "AUTO_HEAL"
    HITL_REQUIRED = 2, "HITL_REQUIRED"


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    APPROVED = "approved", "Approved"
    RETIRED = "retired", "Retired"
