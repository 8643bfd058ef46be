"""Batch inference: severity, confidence and an explanation for every row of a feature matrix.

One vectorised predict_proba for the whole batch, then one more over copies of the
non-healthy rows: in one set of copies one metric at a time is put back to
HEALTHY_BASELINE (how much the chosen class's probability drops says how much that
metric drove it); in the other every metric but one is (a metric whose row alone is
still a problem is a problem of its own: disk and memory both at 97% are two problems,
though each masks the other in the first set).

The decision rule is recorded in each model version's thresholds (apply_thresholds):
versions trained now carry their misclassification cost matrix and every row gets the
class of least expected cost; older versions carry a single HITL_REQUIRED threshold.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.features import (
    FEATURE_CATEGORY,
    FEATURE_NAMES,
    HEALTHY_BASELINE,
    METRIC_NAMES,
)

NO_ACTION, AUTO_HEAL, HITL_REQUIRED = 0, 1, 2  # scoring.choices.Severity's values
N_CLASSES = 3
# The thresholds key of the cost matrix (rows = true class, columns = predicted, in
# severity order): each row gets the class with the least expected cost.
DECISION_COST = "misclassification_cost"
# The thresholds key of the probability floor that goes with it: a class probability
# no higher than the share of flipped labels in the training data cannot be told from
# those flips, so this much is taken off every class before the expected costs.
PROBABILITY_FLOOR = "probability_floor"
# The thresholds key of versions trained before the cost matrix was recorded:
# HITL_REQUIRED whenever p(HITL_REQUIRED) >= this, whatever the argmax.
HITL_THRESHOLD = "hitl_required"
# Contributions at or below this are noise, not a reason.
MIN_CONTRIBUTION = 0.001
# How far a metric must move from its healthy baseline to be a problem, for ranking
# metrics when no contribution is positive (about the distance to the problem level).
METRIC_SCALE: Mapping[str, float] = {
    "disk_usage": 40.0,
    "memory_usage": 40.0,
    "cpu_usage": 60.0,
    "dns_latency_ms": 130.0,
    "firewall_change_requested": 1.0,
}

_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
# For each metric, the columns put back to baseline: the metric and its delta, if any.
_SUBSTITUTED = tuple(
    tuple(_COLUMN[name] for name in (metric, f"{metric}_delta") if name in _COLUMN)
    for metric in METRIC_NAMES
)
_BASELINE_ROW = np.array([HEALTHY_BASELINE[name] for name in FEATURE_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class Classification:
    """The model's verdict on one row."""

    severity: int  # 0 NO_ACTION, 1 AUTO_HEAL, 2 HITL_REQUIRED
    confidence: float  # the probability of `severity`
    probabilities: tuple[float, ...]  # per class, in severity order
    explanation: tuple[tuple[str, float], ...]  # (metric, contribution), strongest first
    category: str | None  # the ticket category of the top metric; None when healthy
    # Every problem the row shows, `category` first: each metric that alone is a problem
    # opens its own ticket. Empty when healthy.
    categories: tuple[str, ...] = ()


def class_probabilities(estimator: Any, X: np.ndarray) -> np.ndarray:
    """(n, 3) probabilities in severity order from ONE predict_proba call.

    A class the estimator never saw in training gets probability 0.
    """
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    classes = [int(c) for c in estimator.classes_]
    if classes == list(range(N_CLASSES)):
        return proba
    full = np.zeros((proba.shape[0], N_CLASSES), dtype=np.float64)
    full[:, classes] = proba
    return full


def apply_thresholds(proba: np.ndarray, thresholds: Mapping[str, Any]) -> np.ndarray:
    """Labels (0, 1, 2) for (n, 3) probabilities, by the rule the model version records.

    With thresholds["misclassification_cost"] (a 3 x 3 cost matrix C, rows = true class):
    the class of least expected cost. Each probability first loses
    thresholds["probability_floor"] (0 if absent; what is left is renormalised), then
    the label is argmin over j of sum_i p_i C[i, j]; an exact tie goes to the higher
    severity, the more cautious call. With scoring.training's costs a row is HITL_REQUIRED
    once p(HITL_REQUIRED) reaches about 1/50 of p(AUTO_HEAL) where AUTO_HEAL is the
    alternative, about 1/20 of p(NO_ACTION) where NO_ACTION is.
    Else with thresholds["hitl_required"] (versions trained before the cost matrix was
    recorded): HITL_REQUIRED when p(HITL_REQUIRED) >= it, else the likelier of NO_ACTION
    and AUTO_HEAL (ties to NO_ACTION). Else the plain argmax (ties to the lower class).
    """
    proba = np.asarray(proba, dtype=np.float64)
    if DECISION_COST in thresholds:
        cost = np.asarray(thresholds[DECISION_COST], dtype=np.float64)
        if cost.shape != (N_CLASSES, N_CLASSES):
            raise ValueError(f"{DECISION_COST} must be {N_CLASSES} x {N_CLASSES}, got {cost.shape}")
        floor = float(thresholds.get(PROBABILITY_FLOOR, 0.0))
        # Below 1/3 the likeliest class always keeps something, so no row sums to zero.
        if not 0.0 <= floor < 1.0 / N_CLASSES:
            raise ValueError(f"{PROBABILITY_FLOOR} must be in [0, 1/{N_CLASSES}), got {floor}")
        if floor:
            proba = np.clip(proba - floor, 0.0, None)
            proba /= proba.sum(axis=1, keepdims=True)
        expected = proba @ cost
        # argmin over the columns in reverse order: ties go to the higher severity.
        return (N_CLASSES - 1 - np.argmin(expected[:, ::-1], axis=1)).astype(np.int64)
    if HITL_THRESHOLD not in thresholds:
        return np.argmax(proba, axis=1).astype(np.int64)
    labels = np.where(proba[:, AUTO_HEAL] > proba[:, NO_ACTION], AUTO_HEAL, NO_ACTION)
    labels[proba[:, HITL_REQUIRED] >= float(thresholds[HITL_THRESHOLD])] = HITL_REQUIRED
    return labels.astype(np.int64)


def classify(estimator: Any, X: np.ndarray, thresholds: Mapping[str, Any]) -> list[Classification]:
    """One Classification per row of X (columns in FEATURE_NAMES order), in row order."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"X must be (n, {len(FEATURE_NAMES)}), got shape {X.shape}")
    if len(X) == 0:
        return []
    proba = class_probabilities(estimator, X)
    labels = apply_thresholds(proba, thresholds)
    chosen = proba[np.arange(len(X)), labels]

    problem_rows = np.flatnonzero(labels != NO_ACTION)
    explanations: dict[int, tuple[tuple[str, float], ...]] = {}
    alone_problems: dict[int, list[str]] = {}
    if len(problem_rows):
        n_metrics, n_rows = len(METRIC_NAMES), len(problem_rows)
        copies = np.repeat(X[problem_rows], n_metrics, axis=0)
        alone = np.tile(_BASELINE_ROW, (n_rows * n_metrics, 1))
        for m, columns in enumerate(_SUBSTITUTED):
            cols = list(columns)
            alone[m::n_metrics, cols] = copies[m::n_metrics, cols]  # the metric as read
            copies[m::n_metrics, cols] = _BASELINE_ROW[cols]  # the metric put back
        # One predict for both sets of copies.
        both = class_probabilities(estimator, np.vstack([copies, alone]))
        substituted = both[: len(copies)].reshape(n_rows, n_metrics, N_CLASSES)
        after = substituted[np.arange(n_rows), :, labels[problem_rows]]
        drops = np.round(chosen[problem_rows, None] - after, 4)
        alone_labels = apply_thresholds(both[len(copies) :], thresholds).reshape(n_rows, n_metrics)
        for i, row_drops, row_alone in zip(
            problem_rows.tolist(), drops.tolist(), alone_labels.tolist(), strict=True
        ):
            explanations[i] = _explain(row_drops)
            alone_problems[i] = [
                METRIC_NAMES[m] for m, label in enumerate(row_alone) if label != NO_ACTION
            ]

    # Plain Python values from here: faster to walk, and JSON-ready for the caller.
    results = []
    for i, (severity, confidence, probabilities) in enumerate(
        zip(labels.tolist(), chosen.tolist(), proba.tolist(), strict=True)
    ):
        explanation = explanations.get(i, ())
        category = None
        categories: tuple[str, ...] = ()
        if severity != NO_ACTION:
            top = explanation[0][0] if explanation else _farthest_from_baseline(X[i])
            category = FEATURE_CATEGORY[top]
            others = (FEATURE_CATEGORY[metric] for metric in alone_problems.get(i, ()))
            categories = tuple(dict.fromkeys([category, *others]))
        results.append(
            Classification(
                severity=severity,
                confidence=confidence,
                probabilities=tuple(probabilities),
                explanation=explanation,
                category=category,
                categories=categories,
            )
        )
    return results


def _explain(drops: list[float]) -> tuple[tuple[str, float], ...]:
    """(metric, drop) above MIN_CONTRIBUTION, strongest first; ties keep METRIC_NAMES order."""
    pairs = [
        (name, drop)
        for name, drop in zip(METRIC_NAMES, drops, strict=True)
        if drop > MIN_CONTRIBUTION
    ]
    return tuple(sorted(pairs, key=lambda pair: -pair[1]))


def _farthest_from_baseline(row: np.ndarray) -> str:
    """The metric furthest above its healthy baseline, relative to METRIC_SCALE."""
    scores = [
        (row[_COLUMN[name]] - HEALTHY_BASELINE[name]) / METRIC_SCALE[name] for name in METRIC_NAMES
    ]
    return METRIC_NAMES[int(np.argmax(scores))]
