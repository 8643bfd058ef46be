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


# Neither page reads a table, so nothing is migrated (about 15 s of CPU on SQLite).
SERVE_AS_PRODUCTION = """
import django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="warden.example")
login = client.get("/admin/login/")
health = client.get("/healthz")
print(login.status_code, health.status_code, "admin/css/base." in login.content.decode())
"""


def start(tmp_path: Path, code: str = PRINT_BACKENDS, **env: str) -> subprocess.CompletedProcess:
    """Run `code` with Django set up in a fresh process with exactly these Warden variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("WARDEN_", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL")
        )
    }
    return subprocess.run(
        [sys.executable, "-c", code],
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
    assert result.stdout.split()[1:] == [
        "None",
        "governance.console.channel_layer.CancellableRedisChannelLayer",
    ]


KEYS = {"SECRET_KEY": "x" * 40, "WARDEN_AUDIT_KEY": "y" * 40}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "x" * 40}, "WARDEN_AUDIT_KEY must be set"),
        ({"SECRET_KEY": "x" * 40, "WARDEN_AUDIT_KEY": "short"}, "WARDEN_AUDIT_KEY must be set"),
        (
            {"SECRET_KEY": "x" * 40, "WARDEN_AUDIT_KEY": "y" * 40, "DEBUG": "true"},
            "DEBUG must be off",
        ),
        ({"SECRET_KEY": "x" * 40, "WARDEN_AUDIT_KEY": "y" * 40}, "ALLOWED_HOSTS must name"),
        ({"WARDEN_ENV": "staging"}, "WARDEN_ENV must be"),
    ],
)
def test_production_refuses_unsafe_settings(tmp_path, env, message):
    result = start(tmp_path, **{"WARDEN_ENV": "production", **env})
    assert result.returncode != 0
    assert message in result.stderr


def test_database_url_selects_postgresql_through_psycopg(tmp_path):
    result = start(tmp_path, DATABASE_URL="postgres://warden@db.example:5432/warden")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "config.postgresql"


PRINT_POOL = """
import django
django.setup()
from django.conf import settings
database = settings.DATABASES["default"]
print(database["CONN_MAX_AGE"], database["OPTIONS"]["pool"]["max_size"])
"""


def test_postgresql_connections_are_pooled_and_bounded_per_process(tmp_path):
    url = "postgres://warden@db.example:5432/warden"
    assert start(tmp_path, PRINT_POOL, DATABASE_URL=url).stdout.split() == ["0", "4"]
    bounded = start(tmp_path, PRINT_POOL, DATABASE_URL=url, DB_POOL_MAX_SIZE="2")
    assert bounded.stdout.split() == ["0", "2"]


def test_every_middleware_serves_async_so_asgi_requests_do_not_hop_threads(settings):
    from django.utils.module_loading import import_string

    sync_only = [
        path
        for path in settings.MIDDLEWARE
        if not getattr(import_string(path), "async_capable", True)
    ]
    assert sync_only == []


def test_static_files_are_served_under_asgi(db):
    import asyncio

    from django.test import AsyncClient

    async def fetch() -> tuple[int, bytes]:
        response = await AsyncClient().get("/static/admin/css/base.css")
        return response.status_code, b"".join([chunk async for chunk in response])

    status, body = asyncio.run(fetch())
    assert status == 200
    assert b"font-family" in body


def test_the_production_image_serves_the_admin_with_its_collected_static_files(tmp_path):
    # given static files collected as the Dockerfile's build step does
    static_root = tmp_path / "static"
    production = {
        "WARDEN_ENV": "production",
        "SECRET_KEY": "collectstatic-only-build-step-placeholder-key",
        "WARDEN_AUDIT_KEY": "test-only-audit-key-" + "z" * 32,
        "STATIC_ROOT": str(static_root),
    }
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={
            **os.environ,
            **production,
            "ALLOWED_HOSTS": "build",
            "WARDEN_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collect.returncode == 0, collect.stderr
    assert (static_root / "staticfiles.json").exists()

    # when the admin and the health check are served in production mode
    result = start(
        tmp_path,
        SERVE_AS_PRODUCTION,
        **production,
        ALLOWED_HOSTS="warden.example",
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    )

    # then both answer, the admin with its manifest-named stylesheet
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "200", "True"]


def test_queue_retry_must_outlast_its_timeout(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 120, "retry": 60}
    ids = [message.id for message in run_checks()]
    assert "warden.E001" in ids


@pytest.mark.parametrize(
    ("ack", "offers", "refused"), [(20, 3, False), (0, 3, True), (20, 0, True), (120, 3, True)]
)
def test_an_agent_has_a_start_window_shorter_than_its_lease_and_at_least_one_offer(
    settings, ack, offers, refused
):
    settings.WARDEN_AGENT_ACK_SECONDS, settings.WARDEN_AGENT_OFFERS = ack, offers
    settings.WARDEN_AGENT_LEASE_SECONDS = 120
    assert ("warden.E005" in [message.id for message in run_checks()]) is refused


def test_production_warns_when_notice_links_would_point_at_localhost(settings):
    settings.PRODUCTION = True
    settings.WARDEN_NOTICE_BASE_URL = "http://localhost:8000"
    assert "warden.W003" in [message.id for message in run_checks(include_deployment_checks=True)]
    settings.WARDEN_NOTICE_BASE_URL = "https://warden.example.com"
    assert "warden.W003" not in [
        message.id for message in run_checks(include_deployment_checks=True)
    ]


def test_an_unknown_feedback_formula_stops_start_up_naming_the_setting(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.WARDEN_FEEDBACK_FORMULA = "mean"

    with pytest.raises(SystemCheckError, match="WARDEN_FEEDBACK_FORMULA is 'mean'") as refused:
        call_command("check")

    assert "warden.E003" in str(refused.value)


def test_both_feedback_formulas_pass_the_start_up_check(settings):
    for formula in ("seed", "wide"):
        settings.WARDEN_FEEDBACK_FORMULA = formula
        assert not [m for m in run_checks() if m.id == "warden.E003"]
