"""Training of the severity model, its decision rule, and its evaluation.

HistGradientBoostingClassifier, chosen for latency (DESIGN's cost table: 1.4 ms for
one sample, 8 ms for 1,000, against 7.6 / 30 ms for a random forest).

The ground truth is a set of per-metric thresholds (scoring.scenarios) in which any
risky signal wins over every safe problem. The trees may combine a safe metric with
the risky ones only (INTERACTION_GROUPS: {disk, DNS, firewall}, {memory, DNS,
firewall}, {CPU, DNS, firewall}; every delta alone): a sample near a threshold is
still judged by that metric, not by whatever else its host happened to look like,
but a tree can learn that a DNS spike or a firewall change request overrides a full
disk. With each feature alone the model was additive, and two or three safe problems
outvoted a risky one (disk 96 + memory 95 + DNS 160 ms came out AUTO_HEAL). Small
trees (4 leaves: a risky split and a safe one) with L2 regularisation keep the
boundaries smooth rather than fitted to a few hosts or to the flipped labels.

Mistakes do not cost the same (MISCLASSIFICATION_COST): a risky sample classified
AUTO_HEAL lets a network or security change run without a person, the worst
mistake; one classified NO_ACTION leaves it unseen. With unit class weights the
probabilities stay calibrated, so the decision follows from the costs: each sample
gets the class of least expected cost (scoring.inference.apply_thresholds), which
asks a person once p(HITL_REQUIRED) reaches about 1/50 of p(AUTO_HEAL), or 1/20 of
p(NO_ACTION). The probabilities are those of the training labels, `label_noise` of
which were flipped, so up to about that much probability in any class is the flips'
doing: the rule takes it off every class first (the recorded probability_floor).
Without it, a few flipped labels among the few hundred samples of one safe problem
were enough to send all of that problem to a person on some training seeds.
Choosing a threshold on a validation split instead proved unstable: near a threshold
there are too few risky samples in any split to outweigh the many cheap false alarms.

Known limit: the trees split DNS latency at bin edges drawn from the training data,
which near 150 ms lie a few ms apart. On some training seeds a DNS latency of
150-153 ms together with two or three safe problems still comes out AUTO_HEAL (on
two of eight seeds tried; never from 153 ms up, never with a firewall request).
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from scoring.choices import Severity
from scoring.drift import reference_distribution
from scoring.features import FEATURE_NAMES
from scoring.inference import (
    DECISION_COST,
    PROBABILITY_FLOOR,
    apply_thresholds,
    class_probabilities,
)
from scoring.synthetic import LABEL_NOISE

# scikit-learn is imported where a model is fitted or scored: importing it costs a process
# 0.8 s, and every process imports this module (through the registry) at start.
if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier

# Defaults of `manage.py train_severity_model` and of the acceptance test: 18,000
# training samples (150 hosts x 120 readings), fitted in about a second on one core.
DEFAULT_TRAIN_HOSTS = 150
DEFAULT_EVAL_HOSTS = 75
DEFAULT_STEPS = 120
TRAIN_SEED = 1
EVAL_SEED = 2

CLASSES = (Severity.NO_ACTION.value, Severity.AUTO_HEAL.value, Severity.HITL_REQUIRED.value)
CLASS_NAMES = tuple(Severity(value).label for value in CLASSES)
# Cost of predicting the column when the truth is the row, in CLASSES order: an
# unneeded look by a person is cheap, a problem left alone costs more, a risky
# change made without a person costs most.
MISCLASSIFICATION_COST = np.array(
    [
        [0.0, 2.0, 1.0],
        [4.0, 0.0, 1.0],
        [20.0, 50.0, 0.0],
    ]
)
# Unit weights keep predict_proba calibrated, which the expected-cost rule assumes.
CLASS_WEIGHTS: dict[int, float] = {0: 1.0, 1: 1.0, 2: 1.0}
DECISION_RULE = "least expected cost"
RISKY_FEATURES = ("dns_latency_ms", "firewall_change_requested")
SAFE_FEATURES = ("disk_usage", "memory_usage", "cpu_usage")
# Feature indices that may meet in one tree: each safe metric with the risky ones;
# every other feature (the deltas) alone.
INTERACTION_GROUPS: list[list[int]] = [
    [FEATURE_NAMES.index(name) for name in (safe, *RISKY_FEATURES)] for safe in SAFE_FEATURES
] + [
    [i]
    for i, name in enumerate(FEATURE_NAMES)
    if name not in SAFE_FEATURES and name not in RISKY_FEATURES
]
ESTIMATOR_PARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    # Prediction walks every tree in Python: latency grows with max_iter x 3 classes.
    "max_iter": 100,
    "max_leaf_nodes": 4,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "interaction_cst": INTERACTION_GROUPS,
    "early_stopping": False,
}


@dataclass
class TrainingResult:
    """A fitted model with what the registry records about it."""

    estimator: "HistGradientBoostingClassifier"
    # The decision rule, read by scoring.inference.apply_thresholds:
    # {"misclassification_cost": 3 x 3 list, "probability_floor": f}
    thresholds: dict[str, Any]
    class_weights: dict[int, float]
    metrics: dict  # on the held-out set: macro_f1, per_class, confusion_matrix, mean_cost, ...
    feature_distribution: dict  # scoring.drift reference of the training features
    params: dict


def decision_thresholds(
    cost: np.ndarray = MISCLASSIFICATION_COST, label_noise: float = LABEL_NOISE
) -> dict[str, Any]:
    """What a version records of its decision rule (scoring.inference.apply_thresholds)."""
    return {DECISION_COST: np.asarray(cost).tolist(), PROBABILITY_FLOOR: float(label_noise)}


def train_severity_model(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_eval: np.ndarray,
    y_eval: np.ndarray,
    *,
    seed: int = 0,
    label_noise: float = LABEL_NOISE,
    progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Fit on (X_train, y_train) and evaluate on the held-out (X_eval, y_eval).

    `label_noise` is the share of y_train that may be wrong (scoring.synthetic flips
    LABEL_NOISE by default); it becomes the decision rule's probability floor.
    """
    say = progress or (lambda line: None)
    X_train = np.asarray(X_train, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.int64)
    X_eval = np.asarray(X_eval, dtype=np.float64)
    y_eval = np.asarray(y_eval, dtype=np.int64)
    for name, X, y in (("train", X_train, y_train), ("eval", X_eval, y_eval)):
        if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"X_{name} must be (n, {len(FEATURE_NAMES)}), got shape {X.shape}")
        if len(X) != len(y) or len(y) == 0:
            raise ValueError(f"X_{name} and y_{name} must be non-empty and of equal length")
        if not np.isin(y, CLASSES).all():
            raise ValueError(f"y_{name} holds labels other than {CLASSES}")
    if len(np.unique(y_train)) < 2:
        raise ValueError("y_train must hold at least two classes")
    if not 0.0 <= label_noise < 1.0 / len(CLASSES):
        raise ValueError(f"label_noise must be in [0, 1/{len(CLASSES)}), got {label_noise}")

    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = HistGradientBoostingClassifier(
        **ESTIMATOR_PARAMS, class_weight=CLASS_WEIGHTS, random_state=seed
    )
    say(f"fitting on {len(y_train)} samples")
    started = time.perf_counter()
    # One thread: on two busy cores, OpenMP threads waiting on each other made a
    # one-second fit take minutes; alone, the second thread gains nothing at this size.
    with threadpool_limits(limits=1, user_api="openmp"):
        estimator.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started
    say(f"fitted {estimator.n_iter_} boosting iterations in {fit_seconds:.1f} s")

    thresholds = decision_thresholds(MISCLASSIFICATION_COST, label_noise)
    predicted = apply_thresholds(class_probabilities(estimator, X_eval), thresholds)
    metrics = evaluation_metrics(y_eval, predicted)
    metrics["n_train"] = len(y_train)
    metrics["fit_seconds"] = round(fit_seconds, 3)
    recall = metrics["per_class"]["HITL_REQUIRED"]["recall"]
    auto_healed = metrics["confusion_matrix"][CLASSES.index(Severity.HITL_REQUIRED)][
        CLASSES.index(Severity.AUTO_HEAL)
    ]
    say(
        f"evaluating: macro-F1 {metrics['macro_f1']:.4f}, HITL_REQUIRED recall {recall:.4f}, "
        f"{auto_healed} risky samples auto-healed, mean cost {metrics['mean_cost']:.4f}"
    )

    return TrainingResult(
        estimator=estimator,
        thresholds=thresholds,
        class_weights=dict(CLASS_WEIGHTS),
        metrics=metrics,
        feature_distribution=reference_distribution(X_train, FEATURE_NAMES),
        params={
            "algorithm": type(estimator).__name__,
            **ESTIMATOR_PARAMS,
            "n_iter": int(estimator.n_iter_),
            "seed": seed,
            "decision_rule": DECISION_RULE,
            "misclassification_cost": MISCLASSIFICATION_COST.tolist(),
            "label_noise": float(label_noise),
            "class_weights": {str(k): v for k, v in CLASS_WEIGHTS.items()},
        },
    )


def evaluation_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """macro_f1, per_class (precision, recall, f1, support by class name), confusion_matrix
    (rows = true class, columns = predicted, in severity order), mean_cost (the
    MISCLASSIFICATION_COST per sample) and n_eval."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(CLASSES)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro")), 6),
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 6),
                "recall": round(float(recall[i]), 6),
                "f1": round(float(f1[i]), 6),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASS_NAMES)
        },
        "confusion_matrix": matrix.tolist(),
        "mean_cost": round(float((matrix * MISCLASSIFICATION_COST).sum()) / max(len(y_true), 1), 6),
        "n_eval": len(y_true),
    }


def confusion_matrix_svg(matrix: list[list[int]], class_names: Sequence[str]) -> str:
    """A small self-contained SVG heatmap of `matrix` (rows = true class) with the counts.

    A cell's shade is its share of the row, so each row reads as that class's recall.
    """
    n = len(class_names)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"matrix must be {n} x {n} for {n} class names")
    cell, left, top = 64, 130, 56
    width, height = left + n * cell + 16, top + n * cell + 16
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="12">',
        "<title>Confusion matrix: rows are the true class, columns the predicted class</title>",
        f'<text x="{left + n * cell / 2}" y="14" text-anchor="middle" '
        f'font-weight="bold">predicted</text>',
        f'<text x="12" y="{top + n * cell / 2}" text-anchor="middle" font-weight="bold" '
        f'transform="rotate(-90 12 {top + n * cell / 2})">true</text>',
    ]
    for j, name in enumerate(class_names):
        x = left + j * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{top - 8}" text-anchor="middle" font-size="9">{escape(name)}</text>'
        )
    for i, row in enumerate(matrix):
        y = top + i * cell
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end" font-size="9">'
            f"{escape(class_names[i])}</text>"
        )
        total = sum(int(count) for count in row)
        for j, count in enumerate(row):
            share = int(count) / total if total else 0.0
            x = left + j * cell
            # White to a dark blue; light text on the dark cells.
            red, green, blue = (round(255 - share * (255 - c)) for c in (8, 69, 148))
            ink = "#ffffff" if share > 0.5 else "#1a1a1a"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="rgb({red},{green},{blue})" stroke="#cccccc"/>'
            )
            parts.append(
                f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                f'fill="{ink}">{int(count)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)
