"""The labelled data generator: reproducible, realistic, with borderline samples and label noise."""

import itertools

import numpy as np
import pytest

from scoring.features import build_features
from scoring.scenarios import PROBLEM_THRESHOLDS, label_reading
from scoring.synthetic import generate_dataset
from scoring.training import DEFAULT_EVAL_HOSTS, DEFAULT_STEPS, DEFAULT_TRAIN_HOSTS, TRAIN_SEED


def clean_labels(dataset) -> np.ndarray:
    return np.array([label_reading(r) for r in dataset.readings])


def test_the_same_seed_gives_the_same_dataset():
    first = generate_dataset(30, 80, seed=4)
    second = generate_dataset(30, 80, seed=4)

    assert first.readings == second.readings
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.y, second.y)


def test_another_seed_gives_another_dataset():
    first = generate_dataset(30, 80, seed=4)
    other = generate_dataset(30, 80, seed=5)

    assert first.X.shape == other.X.shape
    assert not np.array_equal(first.X, other.X)


def test_features_are_built_from_the_readings_in_time_order_per_host():
    dataset = generate_dataset(12, 50, seed=1)

    assert len(dataset.readings) == len(dataset.y) == 12 * 50
    np.testing.assert_array_equal(dataset.X, build_features(dataset.readings))
    for i in range(0, len(dataset.readings), 50):
        block = dataset.readings[i : i + 50]
        assert len({r.host for r in block}) == 1
        assert all(a.taken_at < b.taken_at for a, b in itertools.pairwise(block))


@pytest.mark.parametrize("label_noise", [0.0, 0.01, 0.05])
def test_exactly_the_asked_share_of_labels_is_flipped(label_noise):
    dataset = generate_dataset(30, 80, seed=2, label_noise=label_noise)

    flipped = int((dataset.y != clean_labels(dataset)).sum())

    assert flipped == round(label_noise * len(dataset.y))
    assert set(np.unique(dataset.y)) <= {0, 1, 2}


def test_a_fleet_is_mostly_healthy_but_shows_every_class():
    dataset = generate_dataset(60, 120, seed=3, label_noise=0.0)

    shares = np.bincount(dataset.y, minlength=3) / len(dataset.y)

    assert shares[0] > 0.7
    assert shares[1] > 0.02 and shares[2] > 0.02


@pytest.mark.parametrize(
    ("column", "metric"),
    [(0, "disk_usage"), (1, "memory_usage"), (2, "cpu_usage"), (3, "dns_latency_ms")],
)
def test_every_threshold_has_samples_close_on_both_sides(column, metric):
    dataset = generate_dataset(60, 120, seed=3, label_noise=0.0)
    threshold = PROBLEM_THRESHOLDS[metric]
    values = dataset.X[:, column]

    just_below = ((values >= threshold * 0.95) & (values < threshold)).sum()
    just_above = ((values >= threshold) & (values < threshold * 1.05)).sum()

    assert just_below >= 10 and just_above >= 10


def problem_counts(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: whether a risky signal is up, and how many safe problems are."""
    r = dataset.readings
    risky = np.array(
        [x.firewall_change_requested >= 1 or x.dns_latency_ms >= 150 for x in r], dtype=bool
    )
    safe = np.array(
        [(x.disk_usage >= 85) + (x.memory_usage >= 90) + (x.cpu_usage >= 90) for x in r]
    )
    return risky, safe


@pytest.mark.parametrize(
    ("n_hosts", "seed"), [(DEFAULT_TRAIN_HOSTS, TRAIN_SEED), (DEFAULT_EVAL_HOSTS, 2), (60, 3)]
)
def test_some_samples_carry_several_problems_at_once(n_hosts, seed):
    dataset = generate_dataset(n_hosts, DEFAULT_STEPS, seed, label_noise=0.0)
    risky, safe = problem_counts(dataset)

    risky_and_safe = risky & (safe >= 1)
    several_safe = ~risky & (safe >= 2)

    # A modest share: most problems come alone.
    assert 0.005 < (risky_and_safe | several_safe).mean() < 0.1
    assert risky_and_safe.sum() >= 50 and several_safe.sum() >= 5
    # Any risky signal needs a person, whatever else is wrong; safe problems alone heal.
    assert (dataset.y[risky_and_safe] == 2).all()
    assert (dataset.y[several_safe] == 1).all()


def test_the_training_fleet_has_risky_samples_with_two_safe_problems():
    dataset = generate_dataset(DEFAULT_TRAIN_HOSTS, DEFAULT_STEPS, TRAIN_SEED, label_noise=0.0)
    risky, safe = problem_counts(dataset)

    assert (risky & (safe >= 2)).sum() >= 20


def test_nonsense_arguments_are_refused():
    with pytest.raises(ValueError, match="n_hosts"):
        generate_dataset(0, 10, seed=1)
    with pytest.raises(ValueError, match="label_noise"):
        generate_dataset(5, 10, seed=1, label_noise=1.5)
