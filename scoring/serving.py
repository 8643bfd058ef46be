"""The severity model as web processes serve it: fast at any batch size, one thread always.

scikit-learn's HistGradientBoostingClassifier predicts tree by tree: 100 iterations
x 3 classes is 300 calls into Cython per predict_proba, each opening an OpenMP
region, about 2 ms of CPU for a single sample whatever the batch size (bench/
bench_classification.py). An agent's request holds 1 to 100 samples, so that
overhead, not the arithmetic, is the model's cost on the hot path.

ServingEstimator keeps the fitted estimator and a copy of its trees as arrays
(FlatTrees): every split of every tree side by side, and per tree a table from
the splits' outcomes to the leaf. A batch is then one numpy comparison of each row
with every split and one lookup: the same comparisons and leaf values as
scikit-learn, so the probabilities agree to rounding (tests/scoring/
test_serving.py), 60 times faster for one sample and 3 times for a thousand.
Estimators it cannot flatten go to their own predict_proba, limited to one OpenMP
thread: each web worker has a core at most, and more threads only fight over it
(threadpoolctl).
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

# Rows compared with every split at once: bounds the temporary arrays (~7 MB).
CHUNK_ROWS = 1024


@cache
def _threadpools() -> ThreadpoolController:
    """Made at the first prediction, with scikit-learn's OpenMP runtime loaded first: a
    controller limits only the libraries loaded when it is made, and scikit-learn is
    imported late (scoring.training)."""
    import sklearn.utils._openmp_helpers  # noqa: F401

    return ThreadpoolController()


def one_thread() -> Any:
    """A context in which numpy and scikit-learn use one thread (OpenMP and BLAS).

    OpenMP's thread count is per calling thread, so this is entered around each
    call, by the thread that makes it (~25 microseconds), not once per process.
    """
    return _threadpools().limit(limits=1)


@dataclass(frozen=True)
class FlatTrees:
    """A boosted ensemble as its splits and a leaf table, all trees side by side.

    Each tree has at most `n_splits` splits (HistGradientBoosting's max_leaf_nodes - 1);
    the outcomes of all of them, as bits, pick the leaf: leaf_value[tree, bits]. So a
    batch is one comparison of every row with every split, then one lookup.
    """

    feature: np.ndarray  # int (n_trees * n_splits,): the feature each split reads
    threshold: np.ndarray  # float: the split goes left when the value is <= this
    missing_left: np.ndarray  # bool: where a NaN goes
    leaf_value: np.ndarray  # float (n_trees, 2 ** n_splits): the leaf each outcome reaches
    baseline: np.ndarray  # float (n_classes,): raw score before any tree
    n_splits: int


# Beyond this many splits per tree the leaf table (2 ** n_splits per tree) grows too
# large; such an ensemble is served by scikit-learn.
MAX_SPLITS = 8


def flatten_boosted_trees(estimator: Any) -> FlatTrees | None:
    """FlatTrees for a fitted HistGradientBoostingClassifier, or None for anything else.

    Categorical splits are not flattened (Warden's features are all numeric), nor
    trees of more than MAX_SPLITS splits: scikit-learn serves those itself.
    """
    predictors = getattr(estimator, "_predictors", None)
    baseline = getattr(estimator, "_baseline_prediction", None)
    if not predictors or baseline is None or not hasattr(estimator, "_loss"):
        return None
    trees = [tree.nodes for iteration in predictors for tree in iteration]
    if any(nodes["is_categorical"].any() for nodes in trees):
        return None
    splits = [np.flatnonzero(nodes["is_leaf"] == 0) for nodes in trees]
    n_splits = max(1, max(len(s) for s in splits))
    if n_splits > MAX_SPLITS:
        return None
    feature = np.zeros((len(trees), n_splits), dtype=np.intp)
    # Padding splits compare feature 0 with +inf: always left, and no leaf reads them.
    threshold = np.full((len(trees), n_splits), np.inf)
    missing_left = np.ones((len(trees), n_splits), dtype=bool)
    leaf_value = np.zeros((len(trees), 2**n_splits))
    for t, (nodes, split_nodes) in enumerate(zip(trees, splits, strict=True)):
        bit = {int(node): position for position, node in enumerate(split_nodes)}
        feature[t, : len(split_nodes)] = nodes["feature_idx"][split_nodes]
        threshold[t, : len(split_nodes)] = nodes["num_threshold"][split_nodes]
        missing_left[t, : len(split_nodes)] = nodes["missing_go_to_left"][split_nodes]
        for outcome in range(2**n_splits):
            node = 0
            while not nodes["is_leaf"][node]:
                went_left = outcome >> bit[node] & 1
                node = nodes["left"][node] if went_left else nodes["right"][node]
            leaf_value[t, outcome] = nodes["value"][node]
    return FlatTrees(
        feature=feature.ravel(),
        threshold=threshold.ravel(),
        missing_left=missing_left.ravel(),
        leaf_value=leaf_value,
        baseline=np.asarray(baseline, dtype=np.float64).reshape(-1),
        n_splits=n_splits,
    )


def raw_scores(trees: FlatTrees, X: np.ndarray) -> np.ndarray:
    """(n, n_classes) raw scores: baseline plus the leaf each tree sends each row to."""
    n_rows = X.shape[0]
    n_trees = trees.leaf_value.shape[0]
    values = X[:, trees.feature]  # (n, n_trees * n_splits)
    went_left = values <= trees.threshold
    missing = np.isnan(values)
    if missing.any():
        went_left = np.where(missing, trees.missing_left, went_left)
    went_left = went_left.reshape(n_rows, n_trees, trees.n_splits)
    # Each tree's outcome bits as a number, plus its row start in the raveled table.
    outcome = np.broadcast_to(np.arange(n_trees) << trees.n_splits, (n_rows, n_trees)).copy()
    for position in range(trees.n_splits):
        outcome += went_left[:, :, position] << position
    leaves = trees.leaf_value.take(outcome)
    # Trees are stored iteration by iteration, a class each: class k's are every n_classes-th.
    n_classes = trees.baseline.shape[0]
    scores = np.empty((n_rows, n_classes), dtype=np.float64)
    for k in range(n_classes):
        scores[:, k] = leaves[:, k::n_classes].sum(axis=1)
    return scores + trees.baseline


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class ServingEstimator:
    """predict_proba and classes_ of a fitted estimator, served as described above."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.classes_ = estimator.classes_
        self.trees = flatten_boosted_trees(estimator)
        # A binary model has one tree per iteration and a sigmoid: scikit-learn serves it.
        if self.trees is not None and len(self.trees.baseline) != len(self.classes_):
            self.trees = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.trees is not None:
            return np.vstack(
                [
                    softmax(raw_scores(self.trees, X[start : start + CHUNK_ROWS]))
                    for start in range(0, max(len(X), 1), CHUNK_ROWS)
                ]
            )
        with one_thread():
            return self.estimator.predict_proba(X)
