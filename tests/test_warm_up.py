"""A web worker readies itself before its first request (config/gunicorn.py)."""

import gc
import logging

import pytest

from config.warm import warm_up
from scoring import registry


@pytest.fixture(autouse=True)
def unfrozen_after():
    """warm_up freezes what the process holds out of the collector's way: not this one's."""
    yield
    gc.unfreeze()


@pytest.mark.django_db
def test_a_worker_loads_the_approved_model_before_its_first_request(approved_model, caplog):
    registry.forget_serving_model()
    with caplog.at_level(logging.INFO, logger="config.warm"):
        warm_up()
    assert registry._cache.model is not None
    assert registry._cache.model.version == approved_model.version
    assert f"ready with severity model v{approved_model.version}" in caplog.text
    # what it loaded is out of the collector's passes
    assert gc.get_freeze_count() > 0


@pytest.mark.django_db
def test_a_worker_starts_without_an_approved_model(caplog):
    registry.forget_serving_model()
    with caplog.at_level(logging.INFO, logger="config.warm"):
        warm_up()
    assert registry._cache.model is None
    assert "no severity model is approved yet" in caplog.text
