"""The served model gives scikit-learn's probabilities, with one thread, at any batch size."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_info

from scoring.serving import CHUNK_ROWS, ServingEstimator, flatten_boosted_trees
from scoring.synthetic import generate_dataset


@pytest.fixture(scope="module")
def readings() -> np.ndarray:
    """Held-out readings, with some values missing as a broken agent would send them."""
    X = generate_dataset(40, 60, seed=99).X.astype(np.float64)
    rng = np.random.default_rng(7)
    X[rng.random(X.shape) < 0.02] = np.nan
    return X


def test_flat_trees_give_scikit_learns_probabilities(default_model, readings) -> None:
    served = ServingEstimator(default_model.estimator)
    assert served.trees is not None, "the default model is served from flat trees"
    expected = default_model.estimator.predict_proba(readings)
    np.testing.assert_allclose(served.predict_proba(readings), expected, rtol=0, atol=1e-12)
    assert list(served.classes_) == list(default_model.estimator.classes_)


@pytest.mark.parametrize("rows", [1, 2, CHUNK_ROWS, CHUNK_ROWS + 1])
def test_any_batch_size_gives_the_same_answer_row_by_row(default_model, readings, rows) -> None:
    served = ServingEstimator(default_model.estimator)
    batch = np.resize(readings, (rows, readings.shape[1]))
    together = served.predict_proba(batch)
    assert together.shape == (rows, len(served.classes_))
    np.testing.assert_allclose(together[-1:], served.predict_proba(batch[-1:]), atol=1e-15)
    np.testing.assert_allclose(together.sum(axis=1), 1.0)


def test_an_estimator_that_cannot_be_flattened_is_served_by_scikit_learn(readings) -> None:
    X = np.nan_to_num(readings)
    y = (X[:, 0] > np.median(X[:, 0])).astype(int) + (X[:, 1] > np.median(X[:, 1])).astype(int)
    single_tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    assert flatten_boosted_trees(single_tree) is None
    served = ServingEstimator(single_tree)
    assert served.trees is None
    np.testing.assert_allclose(served.predict_proba(X), single_tree.predict_proba(X))


def test_deep_trees_fall_back_to_scikit_learn(readings) -> None:
    X = np.nan_to_num(readings)
    y = np.arange(len(X)) % 3
    deep = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=31, random_state=0)
    deep.fit(X, y)
    served = ServingEstimator(deep)
    assert served.trees is None  # 2 ** 30 leaves per tree would not fit in a table
    np.testing.assert_allclose(served.predict_proba(X), deep.predict_proba(X))


def test_scikit_learn_fallback_predicts_with_one_thread(monkeypatch, readings) -> None:
    seen: list[int] = []

    class Recording:
        classes_ = np.array([0, 1, 2])

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            seen.extend(pool["num_threads"] for pool in threadpool_info())
            return np.full((len(X), 3), 1 / 3)

    before = [pool["num_threads"] for pool in threadpool_info()]
    ServingEstimator(Recording()).predict_proba(readings[:5])
    assert seen and set(seen) == {1}, "every thread pool limited to one thread while predicting"
    # ... and only while predicting: the limit is not left on the process.
    assert [pool["num_threads"] for pool in threadpool_info()] == before


def test_a_process_starts_without_scikit_learn_and_its_first_prediction_has_one_thread():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    # A fresh Django process, as a manage.py command or a worker starts.
    script = """
import json, sys, django
django.setup()
print(json.dumps([m for m in ("sklearn", "scipy.stats") if m in sys.modules]))
from threadpoolctl import threadpool_info
from scoring.serving import one_thread
with one_thread():
    print(json.dumps({p["internal_api"]: p["num_threads"] for p in threadpool_info()}))
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    imported, pools = map(json.loads, result.stdout.splitlines()[-2:])
    # scikit-learn and scipy.stats (1.2 s of a process's start) wait for their first use
    assert imported == []
    # and then OpenMP, loaded with scikit-learn, is held to one thread like BLAS
    assert pools == {"openblas": 1, "openmp": 1}
