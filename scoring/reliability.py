"""The seed's 4-factor reliability score (0-100). Pure: values in, a breakdown out.

score = AI confidence x 25% + human feedback x 30%
      + success history x 25% + pattern match x 20%
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FeedbackFact:
    """One piece of human feedback on a ticket of the same category."""

    feedback_type: str  # "positive" | "negative" | "neutral"
    rating: int | None  # 1-5 stars, or None when not given
    age_days: float  # how old the feedback is at decision time


@dataclass(frozen=True, slots=True)
class PatternFacts:
    """Statistics of the learned pattern the ticket matches."""

    occurrence_count: int
    positive_feedback_rate: float  # 0-1
    avg_reliability_score: float  # 0-100
    auto_remediation_success_rate: float  # 0-1
    similarity: float  # 0-1, how closely the ticket matches the pattern
    eligible: bool


@dataclass(frozen=True, slots=True)
class ReliabilityInputs:
    ai_confidence: float  # 0-1, the model's probability for its class
    feedback: tuple[FeedbackFact, ...]
    category_resolved: int  # tickets of the category resolved in the last six months
    category_total: int  # tickets of the category in the last six months
    pattern: PatternFacts | None


@dataclass(frozen=True, slots=True)
class ReliabilityBreakdown:
    overall_score: float  # 0-100
    confidence_level: str  # "very_high" | "high" | "medium" | "low"
    ai_confidence: float  # each component 0-100
    human_feedback: float
    success_history: float
    pattern_match: float


def reliability_score(inputs: ReliabilityInputs) -> ReliabilityBreakdown:
    raise NotImplementedError  # filled in by issue 4's work
