"""Feature drift: how far live samples have moved from the data a model was trained on.

The population stability index (PSI) compares, bin by bin, the share of samples a
feature puts in each of the training data's quantile bins:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

The usual reading:

    PSI < 0.1          no significant change
    0.1 <= PSI < 0.25  a moderate shift: worth a look (DRIFT_WARNING)
    PSI >= 0.25        a significant shift: the model is out of its depth, retrain (DRIFT_ALERT)

That reading assumes many independent samples. PSI is biased upward by sampling
noise: about (bins - 1) * (1/n_recent + 1/n_reference) for independent samples,
and far more when samples come from few hosts, since one host's readings move
together (a fleet of 20 hosts tells about as much as 20 samples of a metric that
stays at each host's own level). `sampling_noise` estimates, per feature, the PSI
that noise alone stays under 99% of the time, from the spread between hosts;
monitoring compares thresholds with the PSI beyond it.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

DRIFT_WARNING = 0.1
DRIFT_ALERT = 0.25
# Stands in for an empty bin, whose log ratio would otherwise be infinite.
EPSILON = 1e-4
# Share of same-distribution checks whose PSI stays under the noise estimate.
NOISE_QUANTILE = 0.99


def reference_distribution(
    X: np.ndarray, feature_names: Sequence[str], bins: int = 10
) -> dict[str, dict]:
    """Per feature: {"edges": interior quantile cut points, "fractions": share per bin,
    "samples": finite values counted}.

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
            "samples": int(column.size),  # for the reference's share of sampling noise
        }
    return reference


def population_stability_index(
    reference: dict, X: np.ndarray, feature_names: Sequence[str]
) -> dict[str, float]:
    """PSI per feature of X against `reference`; 0.0 for a feature constant in the reference.

    Features missing from the reference, and a feature with no finite value in X, are skipped.
    """
    psi: dict[str, float] = {}
    for name, expected, index, _ in _binned(reference, X, feature_names):
        if index is None:
            psi[name] = 0.0
            continue
        actual = np.clip(np.bincount(index, minlength=expected.size) / index.size, EPSILON, None)
        psi[name] = float(np.sum((actual - expected) * np.log(actual / expected)))
    return psi


def population_surplus(
    reference: dict, X: np.ndarray, feature_names: Sequence[str]
) -> dict[str, float]:
    """The one-sided PSI per feature: only the bins X fills more than the training data did.

    A model is out of its depth where live samples fall in places its training data was
    thin, not where they are missing: a quiet fleet (every host healthy, no firewall change
    requested) fills fewer bins than the training data, whose full PSI is large for that
    alone (an emptied bin adds expected * ln(expected / EPSILON)), though the model has seen
    all of it. A real shift moves samples into bins the training data filled less: the
    surplus sees it. Same features and zeros as population_stability_index.
    """
    surplus: dict[str, float] = {}
    for name, expected, index, _ in _binned(reference, X, feature_names):
        if index is None:
            surplus[name] = 0.0
            continue
        actual = np.clip(np.bincount(index, minlength=expected.size) / index.size, EPSILON, None)
        more = actual > expected
        surplus[name] = float(
            np.sum((actual[more] - expected[more]) * np.log(actual[more] / expected[more]))
        )
    return surplus


def sampling_noise(
    reference: dict,
    X: np.ndarray,
    feature_names: Sequence[str],
    groups: Sequence | None = None,
    quantile: float = NOISE_QUANTILE,
) -> dict[str, float]:
    """Per feature, the PSI that X's sampling noise alone stays under `quantile` of the time.

    `groups` (a host per row) marks samples that move together; without it rows are
    taken as independent. Same features as population_stability_index.

    To second order PSI is sum_b (a_b - e_b)^2 / e_b, so its mean under no shift is
    sum_b (Var a_b + Var e_b) / e_b. Var a_b is the cluster-robust variance of the
    bin share over groups (a_b(1 - a_b)/(n - 1) for independent rows); Var e_b is
    the reference's, as independent samples. The quantile is that of a scaled
    chi-square matched to the quadratic form's mean and variance (Satterthwaite):
    a few hosts dominating gives fewer degrees of freedom and a longer tail.
    """
    noise: dict[str, float] = {}
    for name, expected, index, rows in _binned(reference, X, feature_names):
        if index is None:
            noise[name] = 0.0
            continue
        bins = expected.size
        if groups is None:
            group = np.arange(index.size)
        else:
            group = np.unique(np.asarray(groups)[rows], return_inverse=True)[1]
        counts = np.zeros((group.max() + 1, bins))
        np.add.at(counts, (group, index), 1)
        n_groups, n = counts.shape[0], index.size
        actual = counts.sum(axis=0) / n
        if n_groups > 1:
            spread = (counts - counts.sum(axis=1, keepdims=True) * actual) / n
            spread /= np.sqrt(expected)
            cov = n_groups / (n_groups - 1) * spread.T @ spread
        else:  # one group: no spread between groups to measure; rows as independent
            cov = np.diag(actual * (1 - actual) / max(n - 1, 1) / expected)
        n_reference = reference[name].get("samples")  # absent from older references
        if n_reference:
            cov += np.diag((1 - expected) / n_reference)
        # PSI ~ sum_i lambda_i chi2(1) over cov's eigenvalues ~ c chi2(dof), from
        # sum lambda = trace and sum lambda^2 = squared Frobenius norm.
        mean, square = float(np.trace(cov)), float(np.sum(cov**2))
        if square <= 0:
            noise[name] = 0.0
            continue
        noise[name] = square / mean * float(_chi_squared().ppf(quantile, mean**2 / square))
    return noise


def _binned(
    reference: dict, X: np.ndarray, feature_names: Sequence[str]
) -> Iterator[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]]:
    """Per feature in `reference` with a finite value in X: (name, expected shares
    (clipped), each finite value's bin or None for a constant feature, finite-row mask)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(f"X must have {len(feature_names)} columns, got shape {X.shape}")
    for j, name in enumerate(feature_names):
        bins = reference.get(name)
        if bins is None:
            continue
        rows = np.isfinite(X[:, j])
        if bins.get("constant") or not bins["edges"]:
            yield name, np.ones(1), None, rows
            continue
        if not rows.any():
            continue
        expected = np.clip(np.asarray(bins["fractions"], dtype=np.float64), EPSILON, None)
        index = np.searchsorted(np.asarray(bins["edges"]), X[rows, j], side="left")
        yield name, expected, index, rows


def _fractions(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `column` in each of the len(edges) + 1 bins."""
    index = np.searchsorted(edges, column, side="left")
    return np.bincount(index, minlength=len(edges) + 1) / column.size


def _chi_squared() -> Any:
    """scipy's chi-squared distribution, imported on first use: scipy.stats costs a process
    0.6 s to import, and most processes never judge drift."""
    from scipy.stats import chi2

    return chi2
