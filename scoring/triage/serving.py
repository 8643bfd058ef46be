"""The text triage model's serving interface (built on the triage-model branch).

Until a triage model is trained and approved there is nothing to serve: both calls raise
NoApprovedTriageModel, and tickets are decided without a suggestion.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from governance.audit.errors import Unavailable


class NoApprovedTriageModel(Unavailable):
    """No text triage model version is approved, so no text is triaged."""

    def __init__(self) -> None:
        super().__init__("no_triage_model", "No text triage model is approved.")


@dataclass(frozen=True)
class TextTriage:
    category: str
    category_confidence: float
    runbook: str
    runbook_confidence: float
    alternatives: tuple[tuple[str, float], ...]
    unsure: bool
    model_version_id: int
    model_version: int


@dataclass(frozen=True)
class SimilarIncident:
    ticket_pk: int
    ticket_id: str
    similarity: float


def triage_texts(texts: Sequence[str]) -> list[TextTriage]:
    raise NoApprovedTriageModel()


def similar_incidents(
    texts: Sequence[str], *, limit: int = 3, min_similarity: float = 0.3
) -> list[list[SimilarIncident]]:
    raise NoApprovedTriageModel()
