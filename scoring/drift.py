"""Feature drift: how far live samples have moved from the data a model was trained on.

The population stability index (PSI) compares, bin by bin, the share of samples a
feature puts in each of the training data's quantile bins:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

The usual reading:

    PSI < 0.1          no significant change
    0.1 <= PSI < 0.25  a moderate shift: worth a look (DRIFT_WARNING)
    PSI >= 0.25        a significant shift: the model is out of its depth, retrain (DRIFT_ALERT)
"""

from collections.abc import Sequence

import numpy as np

DRIFT_WARNING = 0.1
DRIFT_ALERT = 0.25
# Stands in for an empty bin, whose log ratio would otherwise be infinite.
EPSILON = 1e-4


def reference_distribution(
    X: np.ndarray, feature_names: Sequence[str], bins: int = 10
) -> dict[str, dict]:
    """Per feature: {"edges": interior quantile cut points, "fractions": share per bin}.

    Bin i holds values v with edges[i-1] < v <= edges[i]; the outer bins are open.
    A feature with one value only gets {"edges": [], "fractions": [1.0], "constant": True}.
    Plain lists and floats, so the result stores as JSON.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(f"X must have {len(feature_names)} columns, got shape {X.shape}")
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    reference: dict[str, dict] = {}
    for j, name in enumerate(feature_names):
        column = X[:, j][np.isfinite(X[:, j])]
        if column.size == 0 or column.min() == column.max():
            reference[name] = {"edges": [], "fractions": [1.0], "constant": True}
            continue
        quantiles = np.quantile(column, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        # Ties (a 0/1 flag, a metric stuck at 100) collapse quantiles into one cut point.
        edges = np.unique(quantiles)
        fractions = _fractions(column, edges)
        reference[name] = {
            "edges": [float(edge) for edge in edges],
            "fractions": [round(float(f), 6) for f in fractions],
            "constant": False,
        }
    return reference


def population_stability_index(
    reference: dict, X: np.ndarray, feature_names: Sequence[str]
) -> dict[str, float]:
    """PSI per feature of X against `reference`; 0.0 for a feature constant in the reference.

    Features missing from the reference, and a feature with no finite value in X, are skipped.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(f"X must have {len(feature_names)} columns, got shape {X.shape}")
    psi: dict[str, float] = {}
    for j, name in enumerate(feature_names):
        expected_bins = reference.get(name)
        if expected_bins is None:
            continue
        if expected_bins.get("constant") or not expected_bins["edges"]:
            psi[name] = 0.0
            continue
        column = X[:, j][np.isfinite(X[:, j])]
        if column.size == 0:
            continue
        actual = np.clip(_fractions(column, np.asarray(expected_bins["edges"])), EPSILON, None)
        expected = np.clip(np.asarray(expected_bins["fractions"], dtype=np.float64), EPSILON, None)
        psi[name] = float(np.sum((actual - expected) * np.log(actual / expected)))
    return psi


def _fractions(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `column` in each of the len(edges) + 1 bins."""
    index = np.searchsorted(edges, column, side="left")
    return np.bincount(index, minlength=len(edges) + 1) / column.size
