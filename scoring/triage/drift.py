"""Is the triage model out of its depth? Recent tickets' words against what it learned.

Two figures, each beside the one measured at training on the held-out corpus texts
(TriageModelVersion.text_reference): the share of the tickets' words the vectorizer never
saw, and each ticket's best cosine similarity to the training corpus, averaged. New
systems, new wording or another language raise the first and lower the second. Judged
only once TEXT_DRIFT_MIN_TICKETS tickets were opened in the window: a handful of tickets
says nothing.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from remediation.models import Ticket
from scoring.models import TriageModelVersion
from scoring.monitoring import OK, OUT_OF_DEPTH, TOO_FEW_SAMPLES, WATCH
from scoring.serving import one_thread
from scoring.triage.corpus import CORPUS_PATH, load_corpus
from scoring.triage.model import best_similarities, unknown_token_share
from scoring.triage.registry import load_pipeline
from scoring.triage.serving import ticket_text

TEXT_DRIFT_WINDOW = timedelta(days=7)
TEXT_DRIFT_MIN_TICKETS = 50
TEXT_DRIFT_MAX_TICKETS = 2000
# How far beyond the training-time figure each level starts.
UNKNOWN_SHARE_WATCH, UNKNOWN_SHARE_ALERT = 0.10, 0.25
SIMILARITY_WATCH, SIMILARITY_ALERT = 0.10, 0.25


@dataclass(frozen=True)
class TextDriftReport:
    version: int
    tickets: int
    level: str  # scoring.monitoring's levels
    unknown_token_share: float = 0.0
    mean_best_similarity: float = 0.0
    reference_unknown_token_share: float = 0.0
    reference_mean_best_similarity: float = 0.0


def text_drift_level(
    unknown: float, similarity: float, reference_unknown: float, reference_similarity: float
) -> str:
    unknown_rise = unknown - reference_unknown
    similarity_drop = reference_similarity - similarity
    if unknown_rise >= UNKNOWN_SHARE_ALERT or similarity_drop >= SIMILARITY_ALERT:
        return OUT_OF_DEPTH
    if unknown_rise >= UNKNOWN_SHARE_WATCH or similarity_drop >= SIMILARITY_WATCH:
        return WATCH
    return OK


def text_drift(version: TriageModelVersion, now: datetime) -> TextDriftReport:
    """The version's text drift over the tickets opened in the last TEXT_DRIFT_WINDOW."""
    rows = list(
        Ticket.objects.filter(opened_at__gte=now - TEXT_DRIFT_WINDOW)
        .order_by("-pk")
        .values_list("title", "description")[:TEXT_DRIFT_MAX_TICKETS]
    )
    reference = version.text_reference or {}
    base = {
        "version": version.version,
        "tickets": len(rows),
        "reference_unknown_token_share": reference.get("unknown_token_share", 0.0),
        "reference_mean_best_similarity": reference.get("mean_best_similarity", 0.0),
    }
    if len(rows) < TEXT_DRIFT_MIN_TICKETS:
        return TextDriftReport(level=TOO_FEW_SAMPLES, **base)
    pipeline = load_pipeline(version)
    texts = [ticket_text(title, description) for title, description in rows]
    with one_thread():
        unknown = unknown_token_share(pipeline, texts)
        similarity = float(
            best_similarities(pipeline, texts, [i.text for i in load_corpus(CORPUS_PATH)]).mean()
        )
    return TextDriftReport(
        level=text_drift_level(
            unknown,
            similarity,
            base["reference_unknown_token_share"],
            base["reference_mean_best_similarity"],
        ),
        unknown_token_share=round(unknown, 4),
        mean_best_similarity=round(similarity, 4),
        **base,
    )
