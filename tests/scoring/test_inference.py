"""Batch inference: severities, confidence and explanations a supervisor can read."""

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from scoring.features import FEATURE_NAMES, Reading, build_features
from scoring.inference import (
    DECISION_COST,
    HITL_THRESHOLD,
    PROBABILITY_FLOOR,
    Classification,
    apply_thresholds,
    class_probabilities,
    classify,
)
from scoring.training import MISCLASSIFICATION_COST

HEALTHY = {
    "disk_usage": 45.0,
    "memory_usage": 50.0,
    "cpu_usage": 25.0,
    "dns_latency_ms": 18.0,
    "firewall_change_requested": 0,
}
START = datetime(2025, 3, 1, tzinfo=UTC)


def rows(*samples: dict) -> np.ndarray:
    """Feature rows for one host's consecutive samples, each after a healthy reading."""
    readings = []
    for i, metrics in enumerate(samples):
        taken_at = START + timedelta(minutes=i)
        readings.append(Reading("web-01", taken_at, **HEALTHY))
        readings.append(Reading("web-01", taken_at + timedelta(seconds=10), **metrics))
    return build_features(readings)[1::2]


def sample(**metrics: float) -> dict:
    return {**HEALTHY, **metrics}


class CountingEstimator:
    """Passes calls through to a real estimator, counting predict_proba calls and rows."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.classes_ = estimator.classes_
        self.calls: list[int] = []

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.calls.append(len(X))
        return self.estimator.predict_proba(X)


class ConstantEstimator:
    """Says the same thing about every row, whatever is in it."""

    classes_ = np.array([0, 1, 2])

    def __init__(self, proba: list[float]) -> None:
        self.proba = np.array(proba)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.tile(self.proba, (len(X), 1))


def test_a_full_disk_is_auto_healed_and_explained_by_disk_usage(default_model):
    [verdict] = classify(
        default_model.estimator, rows(sample(disk_usage=97.0)), default_model.thresholds
    )

    assert verdict.severity == 1
    assert verdict.category == "disk"
    name, contribution = verdict.explanation[0]
    assert name == "disk_usage"
    assert contribution > 0.5
    assert contribution > sum(value for _, value in verdict.explanation[1:])


def test_a_firewall_change_request_waits_for_a_person(default_model):
    [verdict] = classify(
        default_model.estimator,
        rows(sample(firewall_change_requested=1)),
        default_model.thresholds,
    )

    assert verdict.severity == 2
    assert verdict.category == "firewall"
    assert verdict.explanation[0][0] == "firewall_change_requested"


@pytest.mark.parametrize(
    ("metrics", "severity", "category"),
    [
        ({"memory_usage": 97.0}, 1, "memory"),
        ({"cpu_usage": 99.0}, 1, "cpu"),
        ({"dns_latency_ms": 650.0}, 2, "dns"),
        # Risky and safe at once: a person decides, and the risky metric is the reason.
        ({"disk_usage": 97.0, "firewall_change_requested": 1}, 2, "firewall"),
    ],
)
def test_each_problem_gets_its_severity_and_category(default_model, metrics, severity, category):
    [verdict] = classify(default_model.estimator, rows(sample(**metrics)), default_model.thresholds)

    assert (verdict.severity, verdict.category) == (severity, category)


@pytest.mark.parametrize(
    ("metrics", "category"),
    [
        ({"disk_usage": 96.0, "memory_usage": 95.0, "dns_latency_ms": 160.0}, "dns"),
        (
            {"disk_usage": 95.0, "memory_usage": 95.0, "cpu_usage": 95.0, "dns_latency_ms": 300.0},
            "dns",
        ),
        ({"cpu_usage": 95.0, "firewall_change_requested": 1}, "firewall"),
        (
            {
                "disk_usage": 99.0,
                "memory_usage": 99.0,
                "cpu_usage": 100.0,
                "firewall_change_requested": 1,
            },
            "firewall",
        ),
        ({"disk_usage": 90.0, "cpu_usage": 97.0, "dns_latency_ms": 155.0}, "dns"),
    ],
)
def test_a_risky_signal_among_safe_problems_still_waits_for_a_person(
    default_model, metrics, category
):
    # Auto-healing these would run a DNS or firewall change without a person: the worst mistake.
    [verdict] = classify(default_model.estimator, rows(sample(**metrics)), default_model.thresholds)

    assert verdict.severity == 2
    assert verdict.category == category


@pytest.mark.parametrize(
    "metrics",
    [
        {"disk_usage": 96.0, "memory_usage": 95.0},
        {"memory_usage": 97.0, "cpu_usage": 98.0},
        {"disk_usage": 95.0, "memory_usage": 95.0, "cpu_usage": 95.0},
        # Near, but under, the DNS problem level: the safe problems decide.
        {"disk_usage": 97.0, "cpu_usage": 96.0, "dns_latency_ms": 120.0},
    ],
)
def test_safe_problems_together_are_auto_healed(default_model, metrics):
    [verdict] = classify(default_model.estimator, rows(sample(**metrics)), default_model.thresholds)

    assert verdict.severity == 1


@pytest.mark.parametrize(
    ("metrics", "problems"),
    [
        ({"disk_usage": 97.0, "memory_usage": 97.0}, {"disk", "memory"}),
        ({"memory_usage": 97.0, "cpu_usage": 98.0}, {"memory", "cpu"}),
        ({"disk_usage": 95.0, "memory_usage": 95.0, "cpu_usage": 95.0}, {"disk", "memory", "cpu"}),
        ({"disk_usage": 97.0}, {"disk"}),
        # Close to a problem level without reaching it is no problem of its own.
        ({"disk_usage": 97.0, "dns_latency_ms": 60.0}, {"disk"}),
    ],
)
def test_every_problem_in_a_sample_is_named_the_strongest_first(default_model, metrics, problems):
    # Each metric masks the other when put back alone (the explanation's drops are small):
    # a metric that alone would be a problem is one, whatever else the sample shows.
    [verdict] = classify(default_model.estimator, rows(sample(**metrics)), default_model.thresholds)

    assert set(verdict.categories) == problems
    assert verdict.categories[0] == verdict.category


def test_healthy_rows_have_no_explanation_and_no_category(default_model):
    verdicts = classify(
        default_model.estimator,
        rows(sample(), sample(cpu_usage=60.0), sample(disk_usage=70.0)),
        default_model.thresholds,
    )

    for verdict in verdicts:
        assert verdict.severity == 0
        assert verdict.explanation == ()
        assert verdict.category is None
        assert verdict.categories == ()


def test_explanations_are_sorted_rounded_and_above_noise(default_model):
    X = rows(sample(disk_usage=97.0, memory_usage=95.0), sample(dns_latency_ms=400.0))

    for verdict in classify(default_model.estimator, X, default_model.thresholds):
        values = [value for _, value in verdict.explanation]
        assert values == sorted(values, reverse=True)
        assert all(value > 0.001 and round(value, 4) == value for value in values)


def test_confidence_is_the_probability_of_the_chosen_class(default_model):
    X = rows(sample(), sample(disk_usage=97.0), sample(dns_latency_ms=650.0))

    for verdict in classify(default_model.estimator, X, default_model.thresholds):
        assert verdict.confidence == verdict.probabilities[verdict.severity]
        assert sum(verdict.probabilities) == pytest.approx(1.0)


def test_the_same_input_gives_the_same_verdicts(default_model):
    X = rows(sample(), sample(disk_usage=97.0), sample(firewall_change_requested=1))

    first = classify(default_model.estimator, X, default_model.thresholds)
    second = classify(default_model.estimator, X.copy(), dict(default_model.thresholds))

    assert first == second
    assert all(isinstance(verdict, Classification) for verdict in first)


def test_a_batch_costs_two_predict_proba_calls_whatever_its_size(default_model):
    # given a batch of 2 problem rows among 50
    counting = CountingEstimator(default_model.estimator)
    samples = [sample()] * 48 + [sample(disk_usage=97.0), sample(firewall_change_requested=1)]

    # when it is classified
    verdicts = classify(counting, rows(*samples), default_model.thresholds)

    # then: one call for the batch, one for each problem row's copies: 5 with one metric
    # put back to baseline (the explanation), 5 with only one metric kept (its problems)
    assert len(verdicts) == 50
    assert counting.calls == [50, 2 * 5 * 2]


def test_a_healthy_batch_costs_one_predict_proba_call(default_model):
    counting = CountingEstimator(default_model.estimator)

    classify(counting, rows(*[sample()] * 20), default_model.thresholds)

    assert counting.calls == [20]


def test_without_any_positive_contribution_the_category_is_the_farthest_metric():
    # A model that ignores its input explains nothing; the category still names the problem.
    estimator = ConstantEstimator([0.1, 0.8, 0.1])

    [verdict] = classify(estimator, rows(sample(memory_usage=97.0)), {HITL_THRESHOLD: 0.5})

    assert verdict.severity == 1
    assert verdict.explanation == ()
    assert verdict.category == "memory"


COSTS = {DECISION_COST: MISCLASSIFICATION_COST.tolist()}


def test_the_least_expected_cost_weighs_an_auto_heal_of_a_risky_sample_heaviest():
    proba = np.array(
        [
            [0.02, 0.96, 0.02],  # AUTO_HEAL would cost 0.04 + 1.0, asking a person 0.98
            [0.02, 0.97, 0.01],  # AUTO_HEAL 0.54, a person 0.99
            [0.96, 0.00, 0.04],  # NO_ACTION 0.80, a person 0.96
            [0.94, 0.00, 0.06],  # NO_ACTION 1.20, a person 0.94
            [0.10, 0.10, 0.80],
        ]
    )

    assert apply_thresholds(proba, COSTS).tolist() == [2, 1, 0, 2, 2]
    # The old single threshold let the first row's 2% risk be auto-healed.
    assert apply_thresholds(proba, {HITL_THRESHOLD: 1 / 21}).tolist() == [1, 1, 0, 2, 2]


def test_the_probability_floor_is_taken_off_every_class_before_the_costs():
    proba = np.array([[0.02, 0.96, 0.02], [0.02, 0.90, 0.08]])

    # 1% off: the first row's risk is within the label noise, the second's is not.
    assert apply_thresholds(proba, {**COSTS, PROBABILITY_FLOOR: 0.01}).tolist() == [1, 2]
    assert apply_thresholds(proba, {**COSTS, PROBABILITY_FLOOR: 0.0}).tolist() == [2, 2]


def test_an_exact_tie_in_expected_cost_goes_to_the_more_cautious_class():
    # NO_ACTION would cost 2.0, AUTO_HEAL and HITL_REQUIRED 1.0 each.
    proba = np.array([[0.5, 0.5, 0.0]])

    assert apply_thresholds(proba, COSTS).tolist() == [2]


def test_a_malformed_decision_rule_is_refused():
    proba = np.array([[0.2, 0.3, 0.5]])

    with pytest.raises(ValueError, match="3 x 3"):
        apply_thresholds(proba, {DECISION_COST: [[0.0, 1.0], [1.0, 0.0]]})
    with pytest.raises(ValueError, match=PROBABILITY_FLOOR):
        apply_thresholds(proba, {**COSTS, PROBABILITY_FLOOR: 0.4})


def test_a_version_recorded_with_a_threshold_keeps_its_rule():
    # Versions registered before the cost matrix was recorded carry {"hitl_required": t}.
    proba = np.array([[0.90, 0.04, 0.06], [0.20, 0.75, 0.05], [0.97, 0.02, 0.01]])

    assert apply_thresholds(proba, {HITL_THRESHOLD: 0.05}).tolist() == [2, 2, 0]
    assert apply_thresholds(proba, {}).tolist() == [0, 1, 0]


def test_an_estimator_that_never_saw_a_class_gives_it_probability_zero():
    class TwoClasses:
        classes_ = np.array([0, 2])

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return np.tile([0.3, 0.7], (len(X), 1))

    proba = class_probabilities(TwoClasses(), np.zeros((2, len(FEATURE_NAMES))))

    np.testing.assert_array_equal(proba, [[0.3, 0.0, 0.7], [0.3, 0.0, 0.7]])


def test_an_empty_batch_gives_no_verdicts_and_a_wrong_width_is_refused(default_model):
    empty = np.zeros((0, len(FEATURE_NAMES)))

    assert classify(default_model.estimator, empty, default_model.thresholds) == []
    with pytest.raises(ValueError, match="X must be"):
        classify(default_model.estimator, np.zeros((2, 3)), default_model.thresholds)
