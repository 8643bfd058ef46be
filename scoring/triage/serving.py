"""What the rest of Warden asks the triage model: triage_texts and similar_incidents.

Both take texts as scoring.triage.corpus.incident_text(title, description) builds them
and answer a whole batch with one call into scikit-learn (one predict_proba; one sparse
product with the resolved incidents' vectors), so a task triaging a hundred tickets pays
the model's fixed cost once.
"""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
from django.conf import settings

from remediation.choices import TicketStatus
from remediation.models import Ticket
from scoring.serving import one_thread
from scoring.triage.corpus import incident_text
from scoring.triage.model import decide, tfidf_vectors
from scoring.triage.registry import NoApprovedTriageModel, ServingTriageModel, serving_triage_model

__all__ = [
    "NoApprovedTriageModel",
    "SimilarIncident",
    "TextTriage",
    "forget_incident_index",
    "similar_incidents",
    "ticket_text",
    "triage_texts",
]

# Resolved and closed tickets compared with, newest first: bounds the index's memory
# (20k rows of ~300 non-zero features: ~50 MB) and each batch's product.
MAX_INDEXED_INCIDENTS = 20_000
# Above the best similarity nine in ten held-out corpus texts have to a training text of
# another label and other wording (text_reference other_label_best_p90: 0.34); below it
# two tickets share little beyond boilerplate and host names. Across different wordings
# the same label scores no higher (same_label_best_p50 0.25): similar incidents find
# tickets worded alike, the classifier generalises.
DEFAULT_MIN_SIMILARITY = 0.35
RESOLVED_STATUSES = (TicketStatus.RESOLVED, TicketStatus.CLOSED)


@dataclass(frozen=True)
class TextTriage:
    category: str  # best category ("" when unsure)
    category_confidence: float
    runbook: str  # suggested runbook name, "" when unsure (a person picks)
    runbook_confidence: float
    alternatives: tuple[tuple[str, float], ...]  # top runbook labels with probabilities
    unsure: bool
    model_version_id: int
    model_version: int


@dataclass(frozen=True)
class SimilarIncident:
    ticket_pk: int
    ticket_id: str
    similarity: float


def ticket_text(title: str, description: str) -> str:
    """What the model reads of a ticket."""
    return incident_text(title, description)


def triage_with(model: ServingTriageModel, texts: Sequence[str]) -> list[TextTriage]:
    """triage_texts with a given model (the re-scoring task compares two)."""
    if not texts:
        return []
    with one_thread():
        proba = model.pipeline.predict_proba(list(texts))
    return [
        TextTriage(
            category=s.category,
            category_confidence=s.category_confidence,
            runbook=s.runbook,
            runbook_confidence=s.runbook_confidence,
            alternatives=s.alternatives,
            unsure=s.unsure,
            model_version_id=model.version_id,
            model_version=model.version,
        )
        for s in decide(proba, model.labels, model.rule)
    ]


def triage_texts(texts: Sequence[str]) -> list[TextTriage]:
    """The approved model's triage of each text, in order; one batched predict.

    Raises NoApprovedTriageModel (an Unavailable) when no version is approved (an empty
    batch asks nothing).
    """
    if not texts:
        return []
    return triage_with(serving_triage_model(), texts)


class _IncidentIndex:
    """The newest resolved and closed tickets' vectors under the serving model.

    Refreshed at most every WARDEN_TRIAGE_INDEX_REFRESH_SECONDS: a refresh reads the
    tickets' ids (one indexed query) and vectorizes only those it has not seen; a new
    approved model re-vectorizes everything.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.clear()

    def clear(self) -> None:
        self.version_id: int | None = None
        self.pks: list[int] = []
        self.ticket_ids: list[str] = []
        self.matrix: Any = None
        self.checked_at = 0.0

    def get(self, model: ServingTriageModel) -> tuple[list[int], list[str], Any]:
        now = self.clock()
        with self.lock:
            stale = now - self.checked_at >= settings.WARDEN_TRIAGE_INDEX_REFRESH_SECONDS
            if self.version_id != model.version_id:
                self.clear()
                self.version_id = model.version_id
                stale = True
            if stale:
                self.refresh(model)
                self.checked_at = now
            return self.pks, self.ticket_ids, self.matrix

    def refresh(self, model: ServingTriageModel) -> None:
        newest = list(
            Ticket.objects.filter(status__in=RESOLVED_STATUSES)
            .order_by("-pk")
            .values_list("pk", flat=True)[:MAX_INDEXED_INCIDENTS]
        )
        row_of = {pk: row for row, pk in enumerate(self.pks)}
        kept = [pk for pk in newest if pk in row_of]
        fresh = list(
            Ticket.objects.filter(pk__in=[pk for pk in newest if pk not in row_of])
            .order_by("-pk")
            .values_list("pk", "ticket_id", "title", "description")
        )
        parts = []
        if kept and self.matrix is not None:
            parts.append(self.matrix[[row_of[pk] for pk in kept]])
        if fresh:
            with one_thread():
                parts.append(
                    tfidf_vectors(model.pipeline, [ticket_text(t, d) for _, _, t, d in fresh])
                )
        ticket_id_of = dict(zip(self.pks, self.ticket_ids, strict=True))
        ticket_id_of.update({pk: ticket_id for pk, ticket_id, _, _ in fresh})
        self.pks = kept + [pk for pk, *_ in fresh]
        self.ticket_ids = [ticket_id_of[pk] for pk in self.pks]
        self.matrix = scipy.sparse.vstack(parts).tocsr() if parts else None


_index = _IncidentIndex()


def similar_incidents(
    texts: Sequence[str], *, limit: int = 3, min_similarity: float = DEFAULT_MIN_SIMILARITY
) -> list[list[SimilarIncident]]:
    """For each text, up to `limit` resolved or closed tickets at least `min_similarity`
    alike (cosine of the serving model's TF-IDF vectors), best first.

    Raises NoApprovedTriageModel when no version is approved (the vectors are its own).
    """
    if not texts:
        return []
    model = serving_triage_model()
    pks, ticket_ids, matrix = _index.get(model)
    if matrix is None:
        return [[] for _ in texts]
    with one_thread():
        scores = (tfidf_vectors(model.pipeline, texts) @ matrix.T).toarray()
    answers = []
    for row in scores:
        best = np.argsort(-row, kind="stable")[:limit]
        answers.append(
            [
                SimilarIncident(pks[i], ticket_ids[i], round(float(row[i]), 4))
                for i in best
                if row[i] >= min_similarity
            ]
        )
    return answers


def forget_incident_index() -> None:
    """Drop this process's vectors of resolved tickets (tests)."""
    with _index.lock:
        _index.clear()
