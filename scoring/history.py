"""Labels from the people who run Warden: their verdicts become training data.

- an approved remediation: the sample was risky and worth acting on -> HITL_REQUIRED
- a rejected remediation: people judged nothing should run -> NO_ACTION
- negative feedback on an auto-healed ticket: a person should have been asked -> HITL_REQUIRED
- positive feedback on an auto-healed ticket: healing it alone was right -> AUTO_HEAL
Where several apply to one sample, the most cautious label wins.
"""

from datetime import datetime

import numpy as np

from feedback.models import Feedback, FeedbackType
from governance.models import ApprovalRequest, ApprovalStatus
from remediation.models import Execution
from scoring.choices import Severity
from scoring.features import FEATURE_NAMES, Reading, build_features
from scoring.models import MetricSample


def _reading(sample: MetricSample) -> Reading:
    return Reading(
        host=sample.host.name,
        taken_at=sample.taken_at,
        disk_usage=sample.disk_usage,
        memory_usage=sample.memory_usage,
        cpu_usage=sample.cpu_usage,
        dns_latency_ms=sample.dns_latency_ms,
        firewall_change_requested=int(sample.firewall_change_requested),
    )


def human_labels(since: datetime) -> dict[int, int]:
    """Sample id -> the label people's verdicts give it, for samples since `since`."""
    labels: dict[int, int] = {}

    def label(sample_id: int | None, severity: int) -> None:
        if sample_id is not None:
            labels[sample_id] = max(labels.get(sample_id, severity), severity)

    verdicts = ApprovalRequest.objects.filter(
        decided_at__gte=since, status__in=[ApprovalStatus.APPROVED, ApprovalStatus.REJECTED]
    ).values_list("decision__sample_id", "status")
    for sample_id, status in verdicts:
        approved = status == ApprovalStatus.APPROVED
        label(sample_id, Severity.HITL_REQUIRED if approved else Severity.NO_ACTION)

    auto_healed = set(
        Execution.objects.filter(approval_request__isnull=True, decision__isnull=False)
        .filter(created_at__gte=since)
        .values_list("ticket_id", flat=True)
    )
    opinions = Feedback.objects.filter(
        ticket_id__in=auto_healed,
        feedback_type__in=[FeedbackType.POSITIVE, FeedbackType.NEGATIVE],
    ).values_list("ticket__decisions__sample_id", "feedback_type")
    for sample_id, kind in opinions:
        positive = kind == FeedbackType.POSITIVE
        label(sample_id, Severity.AUTO_HEAL if positive else Severity.HITL_REQUIRED)
    return labels


def labelled_history(since: datetime) -> tuple[np.ndarray, np.ndarray]:
    """The feature rows and labels of the samples people have judged since `since`."""
    labels = human_labels(since)
    if not labels:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, dtype=int)
    samples = MetricSample.objects.filter(pk__in=labels).select_related("host")
    rows, y = [], []
    for sample in samples.order_by("pk"):
        previous = (
            MetricSample.objects.filter(host=sample.host, taken_at__lt=sample.taken_at)
            .select_related("host")
            .order_by("-taken_at")
            .first()
        )
        before = {sample.host.name: _reading(previous)} if previous else {}
        rows.append(build_features([_reading(sample)], before)[0])
        y.append(labels[sample.pk])
    return np.vstack(rows), np.asarray(y, dtype=int)
