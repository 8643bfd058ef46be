"""Training the severity model: the acceptance figures, what is recorded, the SVG matrix."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from scoring.inference import (
    DECISION_COST,
    PROBABILITY_FLOOR,
    apply_thresholds,
    class_probabilities,
)
from scoring.synthetic import LABEL_NOISE, generate_dataset
from scoring.training import (
    CLASS_NAMES,
    DEFAULT_EVAL_HOSTS,
    DEFAULT_STEPS,
    EVAL_SEED,
    MISCLASSIFICATION_COST,
    confusion_matrix_svg,
    evaluation_metrics,
    train_severity_model,
)


def test_default_model_meets_the_acceptance_figures_on_a_held_out_fleet(default_model):
    metrics = default_model.metrics

    assert metrics["macro_f1"] >= 0.97
    assert metrics["per_class"]["HITL_REQUIRED"]["recall"] >= 0.995


def test_the_held_out_fleet_has_risky_samples_with_safe_problems_and_none_is_auto_healed(
    default_model,
):
    # given the held-out fleet, which mixes risky signals with disk, memory and CPU problems
    held_out = generate_dataset(DEFAULT_EVAL_HOSTS, DEFAULT_STEPS, EVAL_SEED, label_noise=0.0)
    X = held_out.X
    risky = (X[:, 3] >= 150) | (X[:, 4] >= 1)
    safe_problems = (X[:, 0] >= 85).astype(int) + (X[:, 1] >= 90) + (X[:, 2] >= 90)
    combined = risky & (safe_problems >= 1)
    assert combined.sum() >= 50 and (risky & (safe_problems >= 2)).sum() >= 10

    # when the default model decides on it
    labels = apply_thresholds(
        class_probabilities(default_model.estimator, X), default_model.thresholds
    )

    # then not one risky sample is healed without a person, combined or not
    assert (labels[combined] == 2).all()
    assert default_model.metrics["confusion_matrix"][2][1] == 0


def test_metrics_describe_the_held_out_set(default_model):
    metrics = default_model.metrics
    matrix = np.array(metrics["confusion_matrix"])

    assert matrix.shape == (3, 3)
    assert matrix.sum() == metrics["n_eval"] == DEFAULT_EVAL_HOSTS * DEFAULT_STEPS
    # Rows are the true class: each row adds up to that class's support.
    for i, name in enumerate(CLASS_NAMES):
        assert matrix[i].sum() == metrics["per_class"][name]["support"]
        assert set(metrics["per_class"][name]) == {"precision", "recall", "f1", "support"}
    assert metrics["n_train"] > metrics["n_eval"]


def test_the_version_records_its_decision_rule_and_class_weights(default_model):
    assert default_model.thresholds == {
        DECISION_COST: MISCLASSIFICATION_COST.tolist(),
        PROBABILITY_FLOOR: LABEL_NOISE,
    }
    # The worst mistake, a risky sample auto-healed, is the dearest in the recorded costs.
    cost = np.array(default_model.thresholds[DECISION_COST])
    assert cost[2, 1] == cost.max() > cost[2, 0]
    assert default_model.class_weights == {0: 1.0, 1: 1.0, 2: 1.0}
    params = default_model.params
    assert params["decision_rule"] == "least expected cost"
    assert params["misclassification_cost"] == cost.tolist()
    assert params["label_noise"] == LABEL_NOISE
    assert params["class_weights"] == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert params["max_leaf_nodes"] == 4
    assert params["interaction_cst"] == [[0, 3, 4], [1, 3, 4], [2, 3, 4], [5], [6], [7], [8]]


def test_everything_the_registry_stores_is_json(default_model):
    for value in (
        default_model.thresholds,
        default_model.metrics,
        default_model.feature_distribution,
        default_model.params,
        {str(k): v for k, v in default_model.class_weights.items()},
    ):
        assert json.loads(json.dumps(value)) == value


def test_training_is_deterministic_and_reports_progress():
    train = generate_dataset(20, 60, seed=8)
    held_out = generate_dataset(10, 60, seed=9, label_noise=0.0)
    lines: list[str] = []

    first = train_severity_model(
        train.X, train.y, held_out.X, held_out.y, seed=3, progress=lines.append
    )
    second = train_severity_model(train.X, train.y, held_out.X, held_out.y, seed=3)

    np.testing.assert_array_equal(
        class_probabilities(first.estimator, held_out.X),
        class_probabilities(second.estimator, held_out.X),
    )
    assert any(line.startswith("fitting") for line in lines)
    assert any(line.startswith("evaluating: macro-F1") for line in lines)


def test_a_matrix_of_the_wrong_width_is_refused():
    train = generate_dataset(10, 40, seed=1)

    with pytest.raises(ValueError, match="X_train"):
        train_severity_model(train.X[:, :5], train.y, train.X, train.y)


def test_held_out_predictions_are_the_classes_of_least_expected_cost(default_model):
    held_out = generate_dataset(10, 60, seed=77, label_noise=0.0)
    proba = class_probabilities(default_model.estimator, held_out.X)

    labels = apply_thresholds(proba, default_model.thresholds)

    kept = np.clip(proba - LABEL_NOISE, 0.0, None)
    expected = (kept / kept.sum(axis=1, keepdims=True)) @ MISCLASSIFICATION_COST
    np.testing.assert_array_equal(labels, np.argmin(expected, axis=1))
    assert set(labels.tolist()) == {0, 1, 2}


def test_mean_cost_prices_the_confusion_matrix():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 2, 1, 0, 2, 2, 1, 0])

    metrics = evaluation_metrics(y_true, y_pred)

    # one false alarm (1), one problem left alone (4), one risky auto-healed (50), one unseen (20)
    assert metrics["mean_cost"] == pytest.approx((1 + 4 + 50 + 20) / 8)


def test_a_label_noise_the_rule_cannot_floor_is_refused():
    train = generate_dataset(10, 40, seed=1)

    with pytest.raises(ValueError, match="label_noise"):
        train_severity_model(train.X, train.y, train.X, train.y, label_noise=0.5)


def test_confusion_matrix_svg_shows_every_count_and_name():
    matrix = [[812, 3, 0], [5, 140, 1], [0, 0, 97]]

    svg = confusion_matrix_svg(matrix, CLASS_NAMES)

    root = ET.fromstring(svg)  # well-formed, self-contained
    texts = [element.text for element in root.iter() if element.text]
    for count in (812, 3, 0, 5, 140, 1, 97):
        assert str(count) in texts
    for name in CLASS_NAMES:
        assert name in texts


def test_confusion_matrix_svg_escapes_names():
    svg = confusion_matrix_svg([[1, 0], [0, 1]], ["<b>", "a&b"])

    assert "&lt;b&gt;" in svg and "a&amp;b" in svg
    texts = [element.text for element in ET.fromstring(svg).iter() if element.text]
    assert "<b>" in texts and "a&b" in texts


def test_confusion_matrix_svg_refuses_a_matrix_that_does_not_fit_the_names():
    with pytest.raises(ValueError):
        confusion_matrix_svg([[1, 2], [3, 4]], CLASS_NAMES)
