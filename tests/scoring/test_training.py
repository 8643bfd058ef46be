"""Training the severity model: the acceptance figures, what is recorded, the SVG matrix."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from scoring.inference import HITL_THRESHOLD, apply_thresholds, class_probabilities
from scoring.synthetic import generate_dataset
from scoring.training import (
    CLASS_NAMES,
    DEFAULT_EVAL_HOSTS,
    DEFAULT_STEPS,
    confusion_matrix_svg,
    train_severity_model,
)


def test_default_model_meets_the_acceptance_figures_on_a_held_out_fleet(default_model):
    metrics = default_model.metrics

    assert metrics["macro_f1"] >= 0.97
    assert metrics["per_class"]["HITL_REQUIRED"]["recall"] >= 0.995


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


def test_the_chosen_threshold_is_more_cautious_than_the_argmax(default_model):
    threshold = default_model.thresholds[HITL_THRESHOLD]

    assert 0.0 < threshold < 0.5
    assert set(default_model.class_weights) == {0, 1, 2}


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


def test_held_out_predictions_use_the_recorded_threshold(default_model):
    held_out = generate_dataset(10, 60, seed=77, label_noise=0.0)
    proba = class_probabilities(default_model.estimator, held_out.X)

    labels = apply_thresholds(proba, default_model.thresholds)

    risky = proba[:, 2] >= default_model.thresholds[HITL_THRESHOLD]
    assert (labels[risky] == 2).all() and (labels[~risky] != 2).all()


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
