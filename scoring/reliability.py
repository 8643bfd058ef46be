"""The seed's 4-factor reliability score (0-100). Pure: values in, a breakdown out.

score = AI confidence x 25% + human feedback x 30%
      + success history x 25% + pattern match x 20%

Each component is 0-100. With no data a component takes a prior, chosen so
that "we know nothing" neither earns nor loses trust:

- human feedback, no feedback at all: 50 (no evidence either way);
- success history, no tickets in the window: 50 (same);
- pattern match, no known pattern (or one seen fewer than 3 times): 0, because
  the component measures similarity to a known pattern and there is none.

So a fresh install scores 0.25 x confidence + 27.5: a model at 0.9 confidence
scores 50.0 ("low"), and trust grows as feedback and history come in (the
seed's progressive automation).

The human feedback factor follows one of two formulas (FEEDBACK_FORMULAS), chosen by
the caller (Warden's setting WARDEN_FEEDBACK_FORMULA):

- "seed" (the default): (positive rate x 100 + average rating / 5 x 100) / 2;
- "wide": the same two terms averaged with the rates of "resolution accurate" and
  "actions worked" (x 100), each over the feedback that gives it.
"""

import math
from dataclasses import dataclass

# Weights of the four components; they sum to 1.
AI_CONFIDENCE_WEIGHT = 0.25
HUMAN_FEEDBACK_WEIGHT = 0.30
SUCCESS_HISTORY_WEIGHT = 0.25
PATTERN_MATCH_WEIGHT = 0.20

# Feedback loses half its weight every 30 days: last month's verdict counts twice
# as much as the month before's, and a six-month-old one about 1/64 as much.
FEEDBACK_HALF_LIFE_DAYS = 30.0
MAX_FEEDBACK_AGE_DAYS = 3650.0

NO_FEEDBACK_SCORE = 50.0
NO_HISTORY_SCORE = 50.0
NO_PATTERN_SCORE = 0.0
# The seed: a pattern needs at least three similar tickets to count as one.
MIN_PATTERN_OCCURRENCES = 3
# A pattern whose feedback is all positive scores up to 20% above its bare similarity.
PATTERN_FEEDBACK_BOOST = 0.20

# The human feedback factor's formulas: the seed's two terms, or those and the two rates
# people may also give (resolution accurate, actions worked).
SEED_FORMULA = "seed"
WIDE_FORMULA = "wide"
FEEDBACK_FORMULAS = (SEED_FORMULA, WIDE_FORMULA)

# The seed's confidence levels: (lowest score of the level, level), highest first.
CONFIDENCE_LEVELS = ((90.0, "very_high"), (75.0, "high"), (60.0, "medium"), (0.0, "low"))


@dataclass(frozen=True, slots=True)
class FeedbackFact:
    """One piece of human feedback on a ticket of the same category."""

    feedback_type: str  # "positive" | "negative" | "neutral"
    rating: int | None  # 1-5 stars, or None when not given
    age_days: float  # how old the feedback is at decision time
    resolution_accurate: bool | None = None  # None: not said
    actions_worked: bool | None = None
    # How much this verdict counts beside a person's (1): a service's feedback weighs what
    # its policy says, 0 by default (it informs, it earns nothing).
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class PatternFacts:
    """Statistics of the learned pattern the ticket matches."""

    occurrence_count: int
    positive_feedback_rate: float  # 0-1
    avg_reliability_score: float  # 0-100
    auto_remediation_success_rate: float  # 0-1
    similarity: float  # 0-1, how closely the ticket matches the pattern
    eligible: bool
    # The seed's step 6 "known good pattern": at least MIN_PATTERN_OCCURRENCES of its
    # tickets resolved and people's feedback on it positive enough (feedback/patterns.py).
    known_good: bool = False


@dataclass(frozen=True, slots=True)
class ReliabilityInputs:
    ai_confidence: float  # 0-1, the model's probability for its class
    feedback: tuple[FeedbackFact, ...]
    category_resolved: int  # tickets of the category resolved in the last six months
    category_total: int  # closed tickets of the category in the last six months
    pattern: PatternFacts | None
    feedback_formula: str = SEED_FORMULA  # one of FEEDBACK_FORMULAS


@dataclass(frozen=True, slots=True)
class ReliabilityBreakdown:
    overall_score: float  # 0-100
    confidence_level: str  # "very_high" | "high" | "medium" | "low"
    ai_confidence: float  # each component 0-100
    human_feedback: float
    success_history: float
    pattern_match: float


def reliability_score(inputs: ReliabilityInputs) -> ReliabilityBreakdown:
    """The weighted score and its four components, each 0-100 rounded to 0.1.

    The overall score is computed from the rounded components, so the breakdown
    a supervisor reads adds up to the score shown.
    """
    ai = _round(_unit(inputs.ai_confidence) * 100)
    feedback = _round(feedback_score(inputs.feedback, inputs.feedback_formula))
    history = _round(success_history_score(inputs.category_resolved, inputs.category_total))
    pattern = _round(pattern_match_score(inputs.pattern))
    overall = _round(
        ai * AI_CONFIDENCE_WEIGHT
        + feedback * HUMAN_FEEDBACK_WEIGHT
        + history * SUCCESS_HISTORY_WEIGHT
        + pattern * PATTERN_MATCH_WEIGHT
    )
    return ReliabilityBreakdown(
        overall_score=overall,
        confidence_level=confidence_level(overall),
        ai_confidence=ai,
        human_feedback=feedback,
        success_history=history,
        pattern_match=pattern,
    )


def confidence_level(score: float) -> str:
    """The seed's level for a 0-100 score: very_high >= 90, high >= 75, medium >= 60, else low."""
    for lowest, level in CONFIDENCE_LEVELS:
        if score >= lowest:
            return level
    return "low"  # negative or NaN: no confidence at all


def feedback_score(feedback: tuple[FeedbackFact, ...], formula: str = SEED_FORMULA) -> float:
    """(positive rate x 100 + average rating / 5 x 100) / 2, both weighted by recency.

    The seed's formula. With formula "wide" it is widened to the other things the
    seed says feedback considers: when people also said whether the resolution was
    accurate and whether the actions worked, those rates (x 100) join the average.
    Each term is taken over the feedback that gives it (no rating given: the positive
    rate alone); neutral feedback counts as not positive.
    Each verdict also counts its own weight (a service's, as its policy says), and
    verdicts of weight 0 are left out. No feedback that weighs: NO_FEEDBACK_SCORE.
    """
    if formula not in FEEDBACK_FORMULAS:
        raise ValueError(f"feedback formula must be one of {FEEDBACK_FORMULAS}, not {formula!r}")
    feedback = tuple(fact for fact in feedback if _unit(fact.weight) > 0)
    if not feedback:
        return NO_FEEDBACK_SCORE
    ages = [_age(fact) for fact in feedback]
    # Weights relative to the newest item: the ratios are the same as with absolute
    # weights, and the newest always weighs 1, so very old feedback cannot underflow to 0/0.
    newest = min(ages)
    weights = [
        0.5 ** ((age - newest) / FEEDBACK_HALF_LIFE_DAYS) * _unit(fact.weight)
        for age, fact in zip(ages, feedback, strict=True)
    ]

    def weighted_mean(values: list[float | None]) -> float | None:
        given = [(w, v) for w, v in zip(weights, values, strict=True) if v is not None]
        total = sum(w for w, _ in given)
        return sum(w * v for w, v in given) / total if total else None

    terms = [
        weighted_mean([100.0 if f.feedback_type == "positive" else 0.0 for f in feedback]),
        weighted_mean(
            [None if f.rating is None else min(max(f.rating, 1), 5) / 5 * 100 for f in feedback]
        ),
    ]
    if formula == WIDE_FORMULA:
        terms += [
            weighted_mean([_percent(f.resolution_accurate) for f in feedback]),
            weighted_mean([_percent(f.actions_worked) for f in feedback]),
        ]
    given = [term for term in terms if term is not None]
    return sum(given) / len(given)


def _percent(flag: bool | None) -> float | None:
    return None if flag is None else 100.0 * flag


def success_history_score(resolved: int, total: int) -> float:
    """resolved / total x 100 over the caller's six months; no tickets: NO_HISTORY_SCORE."""
    if total <= 0:
        return NO_HISTORY_SCORE
    return min(max(resolved, 0), total) / total * 100


def pattern_match_score(pattern: PatternFacts | None) -> float:
    """Similarity to a known pattern x 100, boosted by the pattern's positive feedback.

    A pattern seen fewer than MIN_PATTERN_OCCURRENCES times is not a pattern yet.
    """
    if pattern is None or pattern.occurrence_count < MIN_PATTERN_OCCURRENCES:
        return NO_PATTERN_SCORE
    similarity = _unit(pattern.similarity) * 100
    boost = 1 + PATTERN_FEEDBACK_BOOST * _unit(pattern.positive_feedback_rate)
    return min(similarity * boost, 100.0)


def _age(fact: FeedbackFact) -> float:
    # A negative age (clock skew between writers) counts as brand new; past ten years
    # the weight is nil anyway, and the cap keeps infinity out of the arithmetic.
    if math.isnan(fact.age_days):
        return 0.0
    return min(max(fact.age_days, 0.0), MAX_FEEDBACK_AGE_DAYS)


def _unit(value: float) -> float:
    """Clamp to 0-1; a non-finite value counts as 0, the cautious reading."""
    if not math.isfinite(value):
        return 0.0
    return min(max(value, 0.0), 1.0)


def _round(score: float) -> float:
    return round(min(max(score, 0.0), 100.0), 1)
