"""Labels from the people who run Warden: their verdicts become training data.

Each verdict labels the sample its decision was made on (Decision.sample):

- an approved remediation: a person was asked and said yes -> HITL_REQUIRED
- a rejected remediation: a person was asked and vetoed it; the ticket went to
  people -> HITL_REQUIRED. A veto ("not during the sale") does not say the sample
  was harmless, and teaching NO_ACTION from it would stop Warden asking about the
  next such change, the mistake MISCLASSIFICATION_COST prices highest.
- an override, a person rolling back what ran: it should have waited for a person
  -> HITL_REQUIRED
- negative feedback on an auto-healed ticket: a person should have been asked
  -> HITL_REQUIRED
- positive feedback on an auto-healed ticket whose remediation succeeded: healing
  it alone was right -> AUTO_HEAL
Where several apply to one sample, the most cautious (highest) label wins. The
model's own verdicts, expired requests and neutral feedback label nothing.
"""

from datetime import datetime

import numpy as np
from django.db.models import OuterRef, Subquery

from feedback.models import Feedback, FeedbackType
from governance.models import ApprovalRequest, ApprovalStatus, AuditEvent
from remediation.choices import ExecutionState
from remediation.models import Execution
from scoring.choices import Severity
from scoring.features import FEATURE_NAMES, METRIC_NAMES, Reading, build_features
from scoring.models import MetricSample

# The audit action a person's rollback writes (remediation.actions.roll_back_execution).
ROLLBACK_REQUESTED = "execution.rollback_pending"


def human_labels(since: datetime) -> dict[int, int]:
    """Sample id -> the label people's verdicts given since `since` put on it."""
    labels: dict[int, int] = {}

    def label(sample_id: int | None, severity: int) -> None:
        if sample_id is not None:
            labels[sample_id] = max(labels.get(sample_id, severity), severity)

    asked = ApprovalRequest.objects.filter(
        decided_at__gte=since, status__in=[ApprovalStatus.APPROVED, ApprovalStatus.REJECTED]
    ).values_list("decision__sample_id", flat=True)
    for sample_id in asked:
        label(sample_id, Severity.HITL_REQUIRED)

    # Only a person's rollback is an override; the system rolls back failed
    # verifications itself, and those are the actor "system".
    overridden = AuditEvent.objects.filter(
        action=ROLLBACK_REQUESTED,
        object_type=Execution.__name__,
        actor__startswith="user:",
        created_at__gte=since,
    ).values_list("object_id", flat=True)
    for sample_id in Execution.objects.filter(pk__in=[int(pk) for pk in overridden]).values_list(
        "decision__sample_id", flat=True
    ):
        label(sample_id, Severity.HITL_REQUIRED)

    opinions: dict[int, set[str]] = {}
    for ticket_id, kind in Feedback.objects.filter(
        created_at__gte=since,
        feedback_type__in=[FeedbackType.POSITIVE, FeedbackType.NEGATIVE],
        # people's standing verdicts only: a service's word, or a replaced one, labels nothing
        superseded_at__isnull=True,
        from_service=False,
    ).values_list("ticket_id", "feedback_type"):
        opinions.setdefault(ticket_id, set()).add(kind)
    # Auto-healed: run on the engine's decision, with no approval request. The
    # sample is the one that decision was made on, not every sample of the ticket.
    auto_healed = Execution.objects.filter(
        ticket_id__in=opinions, approval_request__isnull=True, decision__isnull=False
    ).values_list("ticket_id", "decision__sample_id", "state")
    for ticket_id, sample_id, state in auto_healed:
        if FeedbackType.NEGATIVE in opinions[ticket_id]:
            label(sample_id, Severity.HITL_REQUIRED)
        elif state == ExecutionState.SUCCEEDED:
            label(sample_id, Severity.AUTO_HEAL)
    return labels


def labelled_history(since: datetime) -> tuple[np.ndarray, np.ndarray]:
    """The feature rows and labels of the samples people have judged since `since`.

    Rows are built as the pipeline built them: deltas against the host's previous sample.
    """
    labels = human_labels(since)
    if not labels:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, dtype=int)
    # Each sample's previous reading comes along as subqueries: one query in all.
    previous = MetricSample.objects.filter(
        host=OuterRef("host"), taken_at__lt=OuterRef("taken_at")
    ).order_by("-taken_at")
    fields = ("taken_at", *METRIC_NAMES)
    samples = (
        MetricSample.objects.filter(pk__in=labels)
        .select_related("host")
        .annotate(**{f"previous_{name}": Subquery(previous.values(name)[:1]) for name in fields})
        .order_by("pk")
    )
    rows, y = [], []
    for sample in samples:
        before = {}
        if sample.previous_taken_at is not None:
            before[sample.host.name] = Reading(
                host=sample.host.name,
                **{name: getattr(sample, f"previous_{name}") for name in fields},
            )
        rows.append(build_features([sample.as_reading(sample.host.name)], before)[0])
        y.append(labels[sample.pk])
    return np.vstack(rows), np.asarray(y, dtype=int)
