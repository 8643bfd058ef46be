"""Configuration: safe defaults embedded, refusal to start in production with unsafe ones."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks

ROOT = Path(__file__).resolve().parents[1]
PRINT_BACKENDS = """
import django
django.setup()
from django.conf import settings
print(
    settings.DATABASES["default"]["ENGINE"],
    settings.Q_CLUSTER.get("orm"),
    settings.CHANNEL_LAYERS["default"]["BACKEND"],
)
"""


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Set Django up in a fresh process with exactly these Warden variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("WARDEN_", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL")
        )
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_BACKENDS],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "WARDEN_DATA_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_with_nothing_set_it_runs_embedded(tmp_path):
    result = start(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "default",
        "channels.layers.InMemoryChannelLayer",
    ]
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_redis_url_switches_the_broker_and_the_channel_layer(tmp_path):
    result = start(tmp_path, REDIS_URL="redis://127.0.0.1:6399/0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["None", "channels_redis.core.RedisChannelLayer"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "x" * 40, "DEBUG": "true"}, "DEBUG must be off"),
        ({"SECRET_KEY": "x" * 40}, "ALLOWED_HOSTS must name"),
        ({"WARDEN_ENV": "staging"}, "WARDEN_ENV must be"),
    ],
)
def test_production_refuses_unsafe_settings(tmp_path, env, message):
    result = start(tmp_path, **{"WARDEN_ENV": "production", **env})
    assert result.returncode != 0
    assert message in result.stderr


def test_queue_retry_must_outlast_its_timeout(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 120, "retry": 60}
    ids = [message.id for message in run_checks()]
    assert "warden.E001" in ids
