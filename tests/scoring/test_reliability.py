"""The seed's 4-factor reliability score: weights, recency, priors, levels."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.reliability import (
    FEEDBACK_HALF_LIFE_DAYS,
    WIDE_FORMULA,
    FeedbackFact,
    PatternFacts,
    ReliabilityInputs,
    confidence_level,
    feedback_score,
    reliability_score,
)


def pattern(
    similarity: float = 1.0, occurrences: int = 5, positive_rate: float = 0.0
) -> PatternFacts:
    return PatternFacts(
        occurrence_count=occurrences,
        positive_feedback_rate=positive_rate,
        avg_reliability_score=80.0,
        auto_remediation_success_rate=0.9,
        similarity=similarity,
        eligible=True,
    )


def inputs(
    confidence: float = 0.0,
    feedback: tuple[FeedbackFact, ...] = (FeedbackFact("negative", None, 1.0),),
    resolved: int = 0,
    total: int = 1,
    matched: PatternFacts | None = None,
) -> ReliabilityInputs:
    """Every component at 0 unless told otherwise, so one component can be read alone."""
    return ReliabilityInputs(confidence, feedback, resolved, total, matched)


def test_the_seeds_worked_example():
    # given the seed's components: AI 92, feedback 85, history 90, pattern 82
    feedback = (
        *[FeedbackFact("positive", 4, 2.0)] * 9,  # positive rate 0.9, average rating 4.0:
        FeedbackFact("neutral", 4, 2.0),  # (90 + 4/5 x 100) / 2 = 85
    )
    matched = pattern(similarity=0.7, positive_rate=6 / 7)  # 70 x (1 + 0.2 x 6/7) = 82

    # when
    score = reliability_score(inputs(0.92, feedback, resolved=9, total=10, matched=matched))

    # then 0.25 x 92 + 0.30 x 85 + 0.25 x 90 + 0.20 x 82 = 87.4 (the seed rounds it to 87.5)
    assert (score.ai_confidence, score.human_feedback) == (92.0, 85.0)
    assert (score.success_history, score.pattern_match) == (90.0, 82.0)
    assert score.overall_score == 87.4
    assert score.confidence_level == "high"


@pytest.mark.parametrize(
    ("component", "given", "weight"),
    [
        ("ai_confidence", inputs(confidence=1.0), 25.0),
        ("human_feedback", inputs(feedback=(FeedbackFact("positive", 5, 0.0),)), 30.0),
        ("success_history", inputs(resolved=4, total=4), 25.0),
        ("pattern_match", inputs(matched=pattern(similarity=1.0)), 20.0),
    ],
)
def test_each_component_carries_its_seed_weight(component, given, weight):
    # given one component at 100 and the three others at 0
    # when
    score = reliability_score(given)

    # then the score is that component's weight
    assert getattr(score, component) == 100.0
    assert score.overall_score == weight


def test_no_data_takes_the_neutral_priors():
    # given a fresh install: no feedback, no tickets, no pattern
    # when
    score = reliability_score(ReliabilityInputs(0.9, (), 0, 0, None))

    # then feedback and history are neutral (50) and there is no pattern to match (0)
    assert (score.human_feedback, score.success_history, score.pattern_match) == (50.0, 50.0, 0.0)
    assert score.overall_score == 50.0  # 22.5 + 15 + 12.5 + 0
    assert score.confidence_level == "low"


def test_recent_negative_feedback_lowers_the_score_more_than_old():
    # given the same two verdicts, once with the negative one recent, once with it old
    recent_negative = (FeedbackFact("positive", None, 90.0), FeedbackFact("negative", None, 1.0))
    old_negative = (FeedbackFact("positive", None, 1.0), FeedbackFact("negative", None, 90.0))

    # when
    recent = reliability_score(inputs(feedback=recent_negative))
    old = reliability_score(inputs(feedback=old_negative))

    # then
    assert recent.human_feedback < 50.0 < old.human_feedback
    assert recent.overall_score < old.overall_score


def test_feedback_loses_half_its_weight_every_half_life():
    # given a positive verdict today and a negative one a half-life ago
    feedback = (
        FeedbackFact("positive", None, 0.0),
        FeedbackFact("negative", None, FEEDBACK_HALF_LIFE_DAYS),
    )

    # when
    score = reliability_score(inputs(feedback=feedback))

    # then the positive rate is 1 / (1 + 0.5)
    assert score.human_feedback == 66.7


def test_very_old_feedback_still_counts_when_it_is_all_there_is():
    # given feedback far beyond any half-life (its absolute weight would underflow)
    feedback = (FeedbackFact("positive", 5, 50_000.0),)

    # when
    score = reliability_score(inputs(feedback=feedback))

    # then
    assert score.human_feedback == 100.0


def test_feedback_without_ratings_uses_the_positive_rate_alone():
    # given three positive and one negative verdict, no stars
    feedback = (*[FeedbackFact("positive", None, 3.0)] * 3, FeedbackFact("negative", None, 3.0))

    # when
    score = reliability_score(inputs(feedback=feedback))

    # then
    assert score.human_feedback == 75.0


def test_feedback_with_ratings_averages_the_positive_rate_and_the_stars():
    # given one positive verdict rated 4 and one neutral rated 2 (neutral is not positive)
    feedback = (FeedbackFact("positive", 4, 3.0), FeedbackFact("neutral", 2, 3.0))

    # when
    score = reliability_score(inputs(feedback=feedback))

    # then (50 + 3/5 x 100) / 2
    assert score.human_feedback == 55.0


def test_unrated_feedback_counts_for_the_rate_but_not_the_stars():
    # given one positive rated 5 and one negative without stars
    feedback = (FeedbackFact("positive", 5, 3.0), FeedbackFact("negative", None, 3.0))

    # when
    score = reliability_score(inputs(feedback=feedback))

    # then (50 + 100) / 2
    assert score.human_feedback == 75.0


ACCURATE_BUT_FAILED = (
    FeedbackFact("positive", 5, 1.0, resolution_accurate=True, actions_worked=False),
    FeedbackFact("negative", None, 1.0),
)


def test_the_seed_formula_leaves_accuracy_and_effectiveness_out():
    # given a positive verdict rated 5 whose resolution was accurate but whose actions failed,
    # and a negative one that says nothing more
    # when scored by the default (the seed's) formula
    score = reliability_score(inputs(feedback=ACCURATE_BUT_FAILED))

    # then (positive 50 + stars 100) / 2
    assert score.human_feedback == 75.0


def test_the_wide_formula_averages_in_accuracy_and_effectiveness():
    # given the same verdicts, scored by the wide formula
    given = ReliabilityInputs(0.0, ACCURATE_BUT_FAILED, 0, 1, None, feedback_formula=WIDE_FORMULA)

    # when
    score = reliability_score(given)

    # then (positive 50 + stars 100 + accurate 100 + worked 0) / 4
    assert score.human_feedback == 62.5


def test_the_issue_s_feedback_scores_80_by_the_seed_and_40_by_the_wide_formula():
    # given four positive verdicts rated 3 of which people said the resolution was wrong
    # and the actions did not work (the issue's example: 40 in Warden, 80 by the seed)
    feedback = tuple(
        FeedbackFact("positive", 3, 1.0, resolution_accurate=False, actions_worked=False)
        for _ in range(4)
    )

    # when / then: (100 + 60) / 2, and (100 + 60 + 0 + 0) / 4
    assert feedback_score(feedback) == 80.0
    assert feedback_score(feedback, WIDE_FORMULA) == 40.0


def test_an_unknown_formula_is_refused_by_name():
    with pytest.raises(ValueError, match="'mean'"):
        feedback_score((FeedbackFact("positive", 5, 1.0),), "mean")


@pytest.mark.parametrize(("occurrences", "counts"), [(1, False), (2, False), (3, True), (20, True)])
def test_a_pattern_needs_three_occurrences(occurrences, counts):
    # given a perfect match with a pattern seen `occurrences` times
    # when
    score = reliability_score(inputs(matched=pattern(similarity=1.0, occurrences=occurrences)))

    # then
    assert (score.pattern_match == 100.0) is counts
    assert (score.pattern_match == 0.0) is not counts


def test_positive_feedback_boosts_the_pattern_match():
    # given the same similarity to a pattern with and without positive feedback
    # when
    plain = reliability_score(inputs(matched=pattern(similarity=0.6, positive_rate=0.0)))
    liked = reliability_score(inputs(matched=pattern(similarity=0.6, positive_rate=1.0)))

    # then
    assert plain.pattern_match == 60.0
    assert liked.pattern_match == 72.0


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0.0, "low"),
        (59.9, "low"),
        (60.0, "medium"),
        (74.9, "medium"),
        (75.0, "high"),
        (89.9, "high"),
        (90.0, "very_high"),
        (100.0, "very_high"),
    ],
)
def test_confidence_levels_at_the_boundaries(score, level):
    assert confidence_level(score) == level


def test_the_breakdown_reports_the_level_of_its_score():
    # given a score of exactly 75: 0.25 x 100 + 0.30 x 100 + 0.25 x 80 + 0
    given = inputs(1.0, (FeedbackFact("positive", 5, 1.0),), resolved=4, total=5)

    # when
    score = reliability_score(given)

    # then
    assert score.overall_score == 75.0
    assert score.confidence_level == "high"


def test_scores_are_clamped_and_rounded():
    # given out-of-range inputs and a rate with a long decimal expansion
    # when
    over = reliability_score(inputs(confidence=1.7, resolved=5, total=4))
    under = reliability_score(inputs(confidence=-0.2, resolved=1, total=3))

    # then
    assert (over.ai_confidence, over.success_history) == (100.0, 100.0)
    assert (under.ai_confidence, under.success_history) == (0.0, 33.3)


feedback_facts = st.builds(
    FeedbackFact,
    feedback_type=st.sampled_from(["positive", "negative", "neutral"]),
    rating=st.none() | st.integers(1, 5),
    age_days=st.floats(0, 365),
)
patterns = st.builds(
    PatternFacts,
    occurrence_count=st.integers(0, 50),
    positive_feedback_rate=st.floats(0, 1),
    avg_reliability_score=st.floats(0, 100),
    auto_remediation_success_rate=st.floats(0, 1),
    similarity=st.floats(0, 1),
    eligible=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    confidence=st.floats(0, 1),
    feedback=st.lists(feedback_facts, max_size=20).map(tuple),
    resolved=st.integers(0, 100),
    total=st.integers(0, 100),
    matched=st.none() | patterns,
)
def test_any_inputs_give_a_rounded_score_between_0_and_100(
    confidence, feedback, resolved, total, matched
):
    # when
    score = reliability_score(ReliabilityInputs(confidence, feedback, resolved, total, matched))

    # then
    for value in (
        score.overall_score,
        score.ai_confidence,
        score.human_feedback,
        score.success_history,
        score.pattern_match,
    ):
        assert 0.0 <= value <= 100.0
        assert value == round(value, 1)
    assert score.confidence_level == confidence_level(score.overall_score)
    assert score == reliability_score(
        ReliabilityInputs(confidence, feedback, resolved, total, matched)
    )
