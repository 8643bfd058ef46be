"""A file: URI or a plain path as MLFLOW_TRACKING_URI opts into MLflow's file store."""

import os

import pytest

from scoring.tracking import ALLOW_FILE_STORE_ENV, allow_file_store


@pytest.fixture
def unset(monkeypatch):
    # set then deleted: monkeypatch unsets it again after the test
    monkeypatch.setenv(ALLOW_FILE_STORE_ENV, "x")
    monkeypatch.delenv(ALLOW_FILE_STORE_ENV)


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("file:///var/lib/warden/mlruns", "true"),
        ("mlruns", "true"),
        ("/var/lib/warden/mlruns", "true"),
        ("http://mlflow.internal:5000", None),
        ("sqlite:///mlflow.db", None),
    ],
)
def test_only_a_local_store_is_opted_into(unset, uri, allowed):
    allow_file_store(uri)

    assert os.environ.get(ALLOW_FILE_STORE_ENV) == allowed


def test_an_explicit_choice_wins(unset, monkeypatch):
    monkeypatch.setenv(ALLOW_FILE_STORE_ENV, "false")

    allow_file_store("file:///var/lib/warden/mlruns")

    assert os.environ[ALLOW_FILE_STORE_ENV] == "false"
