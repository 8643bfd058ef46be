"""Warden's one settings module: everything comes from environment variables.

With nothing set Warden runs embedded: SQLite (WAL) in WARDEN_DATA_DIR,
django-q2's ORM broker and the in-memory channel layer. DATABASE_URL and
REDIS_URL switch to PostgreSQL, django-q2's Redis broker and channels-redis.
WARDEN_ENV=production refuses to start with unsafe values (see config/checks.py
for the rest). The README's configuration table lists every variable.
"""

import ipaddress
import json
import os
import secrets
import time
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

WARDEN_ENV = env.str("WARDEN_ENV", default="embedded")
if WARDEN_ENV not in ("embedded", "production"):
    raise ImproperlyConfigured(f"WARDEN_ENV must be 'embedded' or 'production', not {WARDEN_ENV!r}")
PRODUCTION = WARDEN_ENV == "production"

DATA_DIR = Path(env.str("WARDEN_DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)
MODEL_DIR = Path(env.str("WARDEN_MODEL_DIR", default=str(DATA_DIR / "models")))


def _generated_key(filename: str) -> str:
    """A random key kept in the data folder (embedded mode), so it survives restarts.

    Processes starting together (the demo's web server and worker, parallel test workers)
    share one key: the first creates the file (exclusively), the others read it once written.
    """
    path = DATA_DIR / filename
    try:
        created = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(created, "w") as file:
            file.write(secrets.token_urlsafe(50))
    for _ in range(100):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.02)  # another process created it and is writing it
    raise ImproperlyConfigured(f"{path} is empty: delete it and a new key is generated")


if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY must be set to 32 or more characters in production")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _generated_key("secret_key")

# The audit chain's HMAC key: kept outside the database, so whoever can write the
# database cannot write a link that verifies (governance/audit/log.py).
if PRODUCTION:
    WARDEN_AUDIT_KEY = env.str("WARDEN_AUDIT_KEY", default="")
    if len(WARDEN_AUDIT_KEY) < 32:
        raise ImproperlyConfigured(
            "WARDEN_AUDIT_KEY must be set to 32 or more characters in production"
        )
else:
    WARDEN_AUDIT_KEY = env.str("WARDEN_AUDIT_KEY", default="") or _generated_key("audit_key")

# The Ed25519 key that signs audit checkpoints, so an auditor holding only its public key
# can check an export (governance/audit/signing.py): PEM text, or the path of a PEM file.
# Embedded Warden generates one into the data folder; production must be given one (the
# system check warden.E004 names what is wrong with it).
WARDEN_AUDIT_SIGNING_KEY = env.str("WARDEN_AUDIT_SIGNING_KEY", default="")
if not WARDEN_AUDIT_SIGNING_KEY and not PRODUCTION:
    WARDEN_AUDIT_SIGNING_KEY = str(DATA_DIR / "audit_signing_key.pem")
    if not Path(WARDEN_AUDIT_SIGNING_KEY).exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        _pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:  # exclusively: processes starting together keep the first one written
            with os.fdopen(
                os.open(WARDEN_AUDIT_SIGNING_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
            ) as _file:
                _file.write(_pem)
        except FileExistsError:
            pass

DEBUG = env.bool("DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production")

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must name the hosts Warden is served on")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Before django_q: its qcluster command, the worker role's, takes the place of django-q2's
    # (remediation/management/commands/qcluster.py).
    "remediation",
    "django_q",
    "simple_history",
    "channels",
    "scoring",
    "governance",
    "feedback",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.static_files.StaticFilesMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'warden.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the qcluster share one file: IMMEDIATE takes the write
    # lock when a transaction starts, so read-then-write never fails half-way.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_TIMEOUT", default=20),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
else:
    # A bounded pool per process (Django's psycopg pool) rather than persistent
    # connections: under ASGI each request runs in its own thread, and a connection kept
    # per thread leaves PostgreSQL out of clients under load. Connections a process can
    # hold: at most DB_POOL_MAX_SIZE, whatever its concurrency (README: Running in
    # production has the arithmetic against max_connections).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Django's backend, not waiting again at once for a PostgreSQL it just found unreachable
    # (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    # Server-side parameters let psycopg prepare a statement run five times on a
    # connection: the hot path's statements are then planned once per pooled
    # connection, not once per request (planning cost more than running them).
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
    # A server that does not answer the connection is given up on in seconds (libpq's
    # default is to wait for ever), so the pool's attempts do not pile up behind it.
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 3)
    # Each connection the pool hands out is checked first (a round trip of an empty
    # query, psycopg_pool's check_connection): after PostgreSQL restarts, a pooled
    # connection it closed is replaced instead of failing the request or task.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=4),
        # A request waits this long for a connection, then answers 503 with Retry-After:
        # with PostgreSQL down or out of connections an agent hears so at once, instead of
        # its own timeout running out first.
        "timeout": env.float("DB_POOL_TIMEOUT", default=0.8),
        # A failed connection attempt is retried a second later, then left to the next
        # request that needs one (psycopg_pool's back-off would otherwise double to 8 or 16 s
        # while PostgreSQL is away, and be that late to see it back).
        "reconnect_timeout": 1.0,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")

# django-q2. The Execution row is the truth and a task only a wake-up call, so
# a redelivered task is harmless; `retry` must exceed `timeout` (config/checks.py).
Q_CLUSTER = {
    "name": "warden",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=60),
    "retry": env.int("Q_RETRY", default=120),
    "max_attempts": 3,
    "queue_limit": 50,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "label": "Task queue",
    "poll": 0.5,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "governance.console.channel_layer.CancellableRedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout, the same as channels-redis's
            # blocking pop; give the pop room so idle consoles don't drop.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# One date-time format with its zone on every page (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Embedded mode serves static files straight from the apps, no collectstatic.
WHITENOISE_USE_FINDERS = not PRODUCTION

LOGIN_URL = "admin:login"

# Content-Security-Policy on every response (django-csp): scripts and styles only from Warden's
# own static files, never inline, so text that came from outside (an alert, a label, a note)
# cannot run even where a page forgot to escape it. 'self' also admits the console's
# websocket on the same host (ws: or wss:, CSP Level 3). Nothing may frame a page, and a
# form posts only to Warden.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PRODUCTION else None
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION

REST_FRAMEWORK = {
    # People and services: API tokens (knox: a hash stored, an expiry, revocable; sent as
    # `Authorization: Token KEY`, so first: an unauthenticated call is told so with a 401),
    # and the console's session. Agents' host keys are accepted only by the agent endpoints.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api_errors.warden_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # `format` is the audit export's own parameter (csv, json, ndjson), not DRF's.
    "URL_FORMAT_OVERRIDE": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Warden API",
    "DESCRIPTION": "Governed autonomy for operations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # An alert's status (firing, resolved) is not a ticket's or an execution's.
    "ENUM_NAME_OVERRIDES": {
        "AlertStatusEnum": "remediation.models.AlertStatus",
        "TicketStatusEnum": "remediation.choices.TicketStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# API tokens for people and services (`manage.py create_api_token`): each token's expiry is
# set when it is issued, never extended by use.
REST_KNOX = {"TOKEN_TTL": None, "AUTO_REFRESH": False, "TOKEN_PREFIX": "wdt_"}

# Warden's own knobs (README: Configuration).
WARDEN_MAX_BATCH = env.int("WARDEN_MAX_BATCH", default=1000)
WARDEN_MODEL_REFRESH_SECONDS = env.float("WARDEN_MODEL_REFRESH_SECONDS", default=3.0)
# How often a process re-reads which tickets are resolved, for similar incidents
# (scoring.triage.serving): only new ones are vectorized.
WARDEN_TRIAGE_INDEX_REFRESH_SECONDS = env.float("WARDEN_TRIAGE_INDEX_REFRESH_SECONDS", default=30.0)
WARDEN_AGENT_LEASE_SECONDS = env.int("WARDEN_AGENT_LEASE_SECONDS", default=120)
# An agent says it started an action it took (POST .../started) within this many seconds,
# or the action is offered to it again; after this many offers unacknowledged, cancelled.
WARDEN_AGENT_ACK_SECONDS = env.int("WARDEN_AGENT_ACK_SECONDS", default=20)
WARDEN_AGENT_OFFERS = env.int("WARDEN_AGENT_OFFERS", default=3)
WARDEN_AGENT_POLL_MAX_SECONDS = env.float("WARDEN_AGENT_POLL_MAX_SECONDS", default=60.0)
WARDEN_VERIFY_SAMPLES = env.int("WARDEN_VERIFY_SAMPLES", default=3)
WARDEN_VERIFY_TIMEOUT_SECONDS = env.int("WARDEN_VERIFY_TIMEOUT_SECONDS", default=300)
# Time is the server's (scoring/samples.py): a reading taken longer ago than this, on the
# server's clock, confirms nothing; a host whose clock is off by more than the flag is
# flagged on its page and in the console; a sample stamped further ahead than the last is
# refused (its host's clock is broken, not skewed).
WARDEN_READING_MAX_AGE_SECONDS = env.int("WARDEN_READING_MAX_AGE_SECONDS", default=300)
WARDEN_CLOCK_SKEW_FLAG_SECONDS = env.int("WARDEN_CLOCK_SKEW_FLAG_SECONDS", default=60)
WARDEN_CLOCK_AHEAD_LIMIT_SECONDS = env.int("WARDEN_CLOCK_AHEAD_LIMIT_SECONDS", default=86_400)
WARDEN_APPROVAL_TTL_HOURS = env.float("WARDEN_APPROVAL_TTL_HOURS", default=24.0)
# A queued execution whose dispatch task has not run this long after the broker took it is
# taken for lost and enqueued again (a second delivery does nothing); the worker's main
# process looks every WARDEN_REQUEUE_CHECK_SECONDS.
WARDEN_REQUEUE_AFTER_SECONDS = env.int("WARDEN_REQUEUE_AFTER_SECONDS", default=10)
WARDEN_REQUEUE_CHECK_SECONDS = env.float("WARDEN_REQUEUE_CHECK_SECONDS", default=2.0)
# Tickets in people's words (remediation.triage): how many one task triages in one model
# call, and how old a `processing` ticket is before the sweeper asks for its task again.
WARDEN_TRIAGE_BATCH_SIZE = env.int("WARDEN_TRIAGE_BATCH_SIZE", default=32)
WARDEN_TRIAGE_REQUEUE_SECONDS = env.int("WARDEN_TRIAGE_REQUEUE_SECONDS", default=60)
# Nothing waits for ever: an action or rollback no agent took, or an execution no worker
# dispatched, within this long is given up (audited); a pause holding one this long too.
WARDEN_DISPATCH_TIMEOUT_SECONDS = env.int("WARDEN_DISPATCH_TIMEOUT_SECONDS", default=900)
WARDEN_HELD_TIMEOUT_SECONDS = env.int("WARDEN_HELD_TIMEOUT_SECONDS", default=86_400)
# Approved or automatic work held for a check time can pass (blast radius, time window,
# rate limit) is given up on, and people told, after this long.
WARDEN_HOLD_DEADLINE_SECONDS = env.int("WARDEN_HOLD_DEADLINE_SECONDS", default=4 * 3600)
WARDEN_METRICS_TOKEN = env.str("WARDEN_METRICS_TOKEN", default="")
# The reliability score's human feedback factor (scoring/reliability.py): "seed", the
# seed's (positive rate + average stars) / 2, or "wide", which also averages in the rates of
# "resolution accurate" and "actions worked". Checked at start-up (config/checks.py).
WARDEN_FEEDBACK_FORMULA = env.str("WARDEN_FEEDBACK_FORMULA", default="seed")


# Notices (governance/notices/): by email through Django's mail backend, and by a
# Slack-compatible incoming webhook. EMAIL_URL is django-environ's form
# (smtp+tls://user:password@host:587); the embedded default prints mail to the worker's log.
def _http_url(name: str, default: str = "") -> str:
    value = env.str(name, default=default)
    if value and not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def _int_at_least(name: str, default: int, least: int) -> int:
    value = env.int(name, default=default)
    if value < least:
        raise ImproperlyConfigured(f"{name} must be at least {least}, not {value}")
    return value


vars().update(
    {
        name: value
        for name, value in env.email_url("EMAIL_URL", default="consolemail://").items()
        if value not in (None, "")
    }
)
EMAIL_TIMEOUT = 10  # seconds: a mail server that hangs must not outlast Q_TIMEOUT
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="warden@localhost")
WARDEN_NOTICE_EMAILS = env.list("WARDEN_NOTICE_EMAILS", default=[])
WARDEN_SLACK_WEBHOOK_URL = _http_url("WARDEN_SLACK_WEBHOOK_URL")
WARDEN_NOTICE_BASE_URL = _http_url("WARDEN_NOTICE_BASE_URL", "http://localhost:8000")
# A link in a notice works once per person, for this long (or until its request expires).
WARDEN_NOTICE_LINK_MAX_AGE_SECONDS = _int_at_least("WARDEN_NOTICE_LINK_MAX_AGE_SECONDS", 3600, 60)
# A notice waits this long for others of its kind; more hosts than the threshold in one
# wait go out as one digest instead of a message each.
WARDEN_NOTICE_GROUP_WAIT_SECONDS = _int_at_least("WARDEN_NOTICE_GROUP_WAIT_SECONDS", 30, 0)
WARDEN_NOTICE_DIGEST_THRESHOLD = _int_at_least("WARDEN_NOTICE_DIGEST_THRESHOLD", 3, 1)
# A storm's tail: for this long after a digest, later notices of its kind go out as one
# follow-up digest after the same wait, however few, never as a message each.
WARDEN_NOTICE_FOLLOW_UP_MINUTES = _int_at_least("WARDEN_NOTICE_FOLLOW_UP_MINUTES", 10, 0)
WARDEN_NOTICE_MAX_ATTEMPTS = _int_at_least("WARDEN_NOTICE_MAX_ATTEMPTS", 5, 1)


# Autonomy earned and lost (governance/rules/autonomy.py), with the seed's numbers: a proposal
# one step up after 20 fixes at 90% verified, positive feedback and very high reliability;
# back to L1 after two failed automatic fixes in 24 h; shadow to enforce at 90% agreement.
def _number_between(name: str, default: float, low: float, high: float) -> float:
    value = env.float(name, default=default)
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low:g} and {high:g}, not {value}")
    return value


WARDEN_PROMOTION_MIN_FIXES = _int_at_least("WARDEN_PROMOTION_MIN_FIXES", 20, 1)
WARDEN_PROMOTION_MIN_SUCCESS_RATE = _number_between("WARDEN_PROMOTION_MIN_SUCCESS_RATE", 0.9, 0, 1)
WARDEN_PROMOTION_MIN_POSITIVE_RATE = _number_between(
    "WARDEN_PROMOTION_MIN_POSITIVE_RATE", 0.85, 0, 1
)
WARDEN_PROMOTION_MIN_RELIABILITY = _number_between("WARDEN_PROMOTION_MIN_RELIABILITY", 90.0, 0, 100)
WARDEN_DEMOTION_FAILURES = _int_at_least("WARDEN_DEMOTION_FAILURES", 2, 1)
WARDEN_DEMOTION_WINDOW_HOURS = _number_between("WARDEN_DEMOTION_WINDOW_HOURS", 24.0, 0.01, 8760)
WARDEN_SHADOW_MIN_AGREEMENT = _number_between("WARDEN_SHADOW_MIN_AGREEMENT", 0.9, 0, 1)
WARDEN_SHADOW_MIN_CASES = _int_at_least("WARDEN_SHADOW_MIN_CASES", 20, 1)
# People's verdicts count over this many days (one per person per ticket, all of them, not
# the newest rows); a promotion proposal resting on fewer distinct people says so.
WARDEN_FEEDBACK_WINDOW_DAYS = _int_at_least("WARDEN_FEEDBACK_WINDOW_DAYS", 90, 1)
WARDEN_PROPOSAL_MIN_PEOPLE = _int_at_least("WARDEN_PROPOSAL_MIN_PEOPLE", 2, 1)
# How long readings are kept (scoring/retention.py): raw samples for this many days (on
# PostgreSQL a day's partition is dropped whole once all of it is older; on SQLite they are
# deleted in batches), their per-minute summaries per host (what the console, drift and a
# host's page read) for longer. A reading older than the samples' period is refused.
WARDEN_SAMPLE_RETENTION_DAYS = _int_at_least("WARDEN_SAMPLE_RETENTION_DAYS", 30, 1)
WARDEN_MINUTE_RETENTION_DAYS = _int_at_least("WARDEN_MINUTE_RETENTION_DAYS", 400, 1)
if WARDEN_MINUTE_RETENTION_DAYS < WARDEN_SAMPLE_RETENTION_DAYS:
    raise ImproperlyConfigured(
        "WARDEN_MINUTE_RETENTION_DAYS must be at least WARDEN_SAMPLE_RETENTION_DAYS "
        f"({WARDEN_SAMPLE_RETENTION_DAYS}), not {WARDEN_MINUTE_RETENTION_DAYS}"
    )


# The seed's global ceilings over every policy (governance/rules/ceilings.py). They only ever
# tighten: a policy stricter than a ceiling keeps its own value. Unset, none applies.
def _strict_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def _number(name: str, kind: type, least: float, most: float | None = None) -> float | None:
    raw = env.str(name, default="").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name} must be {what}, not {raw!r}") from None
    if not (least <= value and (most is None or value <= most)):  # NaN fails too
        bounds = f"{least:g} to {most:g}" if most is not None else f"at least {least:g}"
        raise ImproperlyConfigured(f"{name} must be {bounds}, not {raw}")
    return value


AUTO_REMEDIATION_ENABLED = _strict_bool("AUTO_REMEDIATION_ENABLED", True)
AUTO_REMEDIATION_REQUIRE_APPROVAL = _strict_bool("AUTO_REMEDIATION_REQUIRE_APPROVAL", False)
AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR = _number("AUTO_REMEDIATION_MAX_ACTIONS_PER_HOUR", int, 0)
AUTO_REMEDIATION_MIN_RELIABILITY = _number("AUTO_REMEDIATION_MIN_RELIABILITY", float, 0, 100)
PATTERN_MIN_OCCURRENCES = _number("PATTERN_MIN_OCCURRENCES", int, 1)
PATTERN_MIN_POSITIVE_RATE = _number("PATTERN_MIN_POSITIVE_RATE", float, 0, 1)


# Requests out (config/outbound.py: hand-offs, the notices' webhook) never go to loopback,
# link-local, private or other non-global addresses, except to the networks listed here
# (CIDRs, comma-separated, e.g. 10.20.0.0/16 for an AWX on the inside network).
def _networks(name: str) -> list[str]:
    networks = [network.strip() for network in env.list(name, default=[]) if network.strip()]
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=True)
        except ValueError as error:
            raise ImproperlyConfigured(f"{name}: {network!r} is not a network: {error}") from None
    return networks


WARDEN_OUTBOUND_ALLOWED_NETWORKS = _networks("WARDEN_OUTBOUND_ALLOWED_NETWORKS")


# Hand-off out (remediation/handoff.py): where automation systems call back, and how long
# Warden waits for one to answer a launch request.
WARDEN_CALLBACK_BASE_URL = _http_url("WARDEN_CALLBACK_BASE_URL", WARDEN_NOTICE_BASE_URL)
WARDEN_HANDOFF_TIMEOUT_SECONDS = _int_at_least("WARDEN_HANDOFF_TIMEOUT_SECONDS", 10, 1)
# A callback's signature is good for this long after it was made (replays are refused).
WARDEN_HANDOFF_SIGNATURE_MAX_AGE_SECONDS = _int_at_least(
    "WARDEN_HANDOFF_SIGNATURE_MAX_AGE_SECONDS", 300, 10
)


# Alerts in (remediation/alert_payloads.py): which labels name an alert's host and category, the
# category of well-known alert names, and whether an alert's ticket may be fixed without a
# person (the seed's rule for tickets other systems open: off unless asked for).
def _json_object(name: str, default: dict) -> dict:
    raw = env.str(name, default="").strip()
    if not raw:
        return dict(default)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a JSON object: {exc}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ImproperlyConfigured(f"{name} must be a JSON object of strings to strings")
    return {**default, **value}


WARDEN_ALERT_HOST_LABELS = env.list(
    "WARDEN_ALERT_HOST_LABELS", default=["warden_host", "host", "hostname", "nodename", "instance"]
)
WARDEN_ALERT_CATEGORY_LABELS = env.list(
    "WARDEN_ALERT_CATEGORY_LABELS", default=["warden_category", "category"]
)
# alertname -> category; the defaults are node_exporter's and awesome-prometheus-alerts' names.
WARDEN_ALERT_CATEGORIES = _json_object(
    "WARDEN_ALERT_CATEGORIES",
    {
        "NodeFilesystemAlmostOutOfSpace": "disk",
        "NodeFilesystemSpaceFillingUp": "disk",
        "HostOutOfDiskSpace": "disk",
        "HostDiskWillFillIn24Hours": "disk",
        "NodeMemoryHighUtilization": "memory",
        "HostOutOfMemory": "memory",
        "NodeCPUHighUsage": "cpu",
        "HostHighCpuLoad": "cpu",
        "HostCpuHighIowait": "cpu",
        "BlackboxSlowDNS": "dns",
        "CoreDNSLatencyHigh": "dns",
    },
)
WARDEN_ALERT_AUTO_REMEDIATION = _strict_bool("WARDEN_ALERT_AUTO_REMEDIATION", False)
# Where the generic JSON webhook finds each field in a posted alert: dotted paths into the
# body ("alerts" is the path to a list of alerts; empty: the body is one alert or a list).
WARDEN_ALERT_WEBHOOK_FIELDS = _json_object(
    "WARDEN_ALERT_WEBHOOK_FIELDS",
    {
        "alerts": "",
        "fingerprint": "id",
        "status": "status",
        "host": "host",
        "category": "category",
        "name": "name",
        "title": "title",
        "description": "description",
        "priority": "priority",
        "link": "url",
    },
)
# A webhook alert whose status is one of these has ended; any other status is firing.
WARDEN_ALERT_WEBHOOK_RESOLVED = env.list(
    "WARDEN_ALERT_WEBHOOK_RESOLVED", default=["resolved", "ok", "recovered", "closed"]
)
# How far ahead of Warden's clock an alert's startsAt or endsAt may be: past it, the alert is
# refused (an end in the future is no evidence that a fix worked).
WARDEN_ALERT_CLOCK_TOLERANCE_SECONDS = _int_at_least("WARDEN_ALERT_CLOCK_TOLERANCE_SECONDS", 300, 0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Post-action reviews (governance/promotions/reviews.py) ---------------------------------------
# What Warden does by itself at L2 and L3 is reviewed by a person within this many hours;
# past it the review shows as overdue on the console and the admin's home page.
WARDEN_REVIEW_DUE_HOURS = _int_at_least("WARDEN_REVIEW_DUE_HOURS", 24, 1)
# L3's actions are told in one digest: the first waits this many minutes for the others.
WARDEN_REVIEW_DIGEST_MINUTES = _int_at_least("WARDEN_REVIEW_DIGEST_MINUTES", 60, 0)
# --- end of post-action reviews --------------------------------------------------------
