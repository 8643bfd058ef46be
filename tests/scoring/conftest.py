"""The default severity model, trained once per session (a couple of seconds), no database."""

import pytest
from django.core.cache import cache

from scoring.synthetic import generate_dataset
from scoring.training import (
    DEFAULT_EVAL_HOSTS,
    DEFAULT_STEPS,
    DEFAULT_TRAIN_HOSTS,
    EVAL_SEED,
    TRAIN_SEED,
    TrainingResult,
    train_severity_model,
)


@pytest.fixture(scope="session")
def default_model() -> TrainingResult:
    """Trained on the defaults with TRAIN_SEED, evaluated on clean labels drawn with EVAL_SEED."""
    train = generate_dataset(DEFAULT_TRAIN_HOSTS, DEFAULT_STEPS, TRAIN_SEED)
    held_out = generate_dataset(DEFAULT_EVAL_HOSTS, DEFAULT_STEPS, EVAL_SEED, label_noise=0.0)
    return train_severity_model(train.X, train.y, held_out.X, held_out.y, seed=TRAIN_SEED)


@pytest.fixture(autouse=True)
def forget_drift_verdicts():
    """Each test starts with no remembered drift verdict (scoring.monitoring's hysteresis)."""
    cache.clear()
    yield
    cache.clear()
