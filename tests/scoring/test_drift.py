"""Feature drift: PSI stays near zero for the same distribution and alerts on a shift."""

import json

import numpy as np

from scoring.drift import (
    DRIFT_ALERT,
    DRIFT_WARNING,
    population_stability_index,
    reference_distribution,
)

NAMES = ("latency", "flag", "constant")


def fleet(seed: int, shift: float = 0.0, flag_share: float = 0.05, n: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.lognormal(3.0 + shift, 0.4, n),
            (rng.random(n) < flag_share).astype(float),
            np.full(n, 7.0),
        ]
    )


def test_the_same_distribution_scores_near_zero():
    reference = reference_distribution(fleet(1), NAMES)

    psi = population_stability_index(reference, fleet(2), NAMES)

    assert all(value < 0.02 for value in psi.values())
    assert max(psi.values()) < DRIFT_WARNING


def test_the_training_data_itself_scores_zero():
    X = fleet(1)

    psi = population_stability_index(reference_distribution(X, NAMES), X, NAMES)

    assert all(abs(value) < 1e-4 for value in psi.values())


def test_a_shifted_metric_raises_an_alert():
    reference = reference_distribution(fleet(1), NAMES)

    psi = population_stability_index(reference, fleet(2, shift=0.5), NAMES)

    assert psi["latency"] > DRIFT_ALERT
    assert psi["flag"] < DRIFT_WARNING


def test_a_flag_raised_far_more_often_raises_an_alert():
    reference = reference_distribution(fleet(1), NAMES)

    psi = population_stability_index(reference, fleet(2, flag_share=0.4), NAMES)

    assert psi["flag"] > DRIFT_ALERT


def test_a_constant_feature_scores_zero_even_when_it_moves():
    reference = reference_distribution(fleet(1), NAMES)
    moved = fleet(2)
    moved[:, 2] = 99.0

    assert population_stability_index(reference, moved, NAMES)["constant"] == 0.0
    assert reference["constant"]["constant"] is True


def test_all_samples_in_one_bin_give_a_finite_score():
    reference = reference_distribution(fleet(1), NAMES)
    piled_up = fleet(2)
    piled_up[:, 0] = 1_000.0

    psi = population_stability_index(reference, piled_up, NAMES)

    assert np.isfinite(psi["latency"]) and psi["latency"] > DRIFT_ALERT


def test_the_reference_survives_a_json_round_trip():
    reference = reference_distribution(fleet(1), NAMES, bins=10)
    stored = json.loads(json.dumps(reference))

    assert stored == reference
    assert len(stored["latency"]["fractions"]) == len(stored["latency"]["edges"]) + 1 == 10
    assert np.isclose(sum(stored["latency"]["fractions"]), 1.0)
    shifted = fleet(2, shift=0.5)
    assert population_stability_index(stored, shifted, NAMES) == population_stability_index(
        reference, shifted, NAMES
    )
