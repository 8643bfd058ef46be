"""Shared fixtures: personas, approved models (severity; text triage on request), and an agent
talking to the API.

Personas: alice supervises, bob and carol approve, dave is compliance (read only).
"""

import copy
import hashlib
import json
import os
import pickle
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.test import Client, override_settings
from django.utils import timezone
from django_q.conf import Conf

from config.static_files import StaticFilesMiddleware
from governance.audit.log import audit_maintenance
from governance.people.actions import issue_api_token
from remediation.actions import add_host
from scoring.actions import approve_model_version
from scoring.registry import forget_serving_model, register_training_result
from scoring.synthetic import generate_dataset
from scoring.training import (
    DEFAULT_EVAL_HOSTS,
    DEFAULT_STEPS,
    DEFAULT_TRAIN_HOSTS,
    EVAL_SEED,
    TRAIN_SEED,
    train_severity_model,
)
from scoring.triage.actions import approve_triage_model_version
from scoring.triage.corpus import CATALOGUE, load_corpus
from scoring.triage.model import TriageTrainingResult, label_of, train_triage_model
from scoring.triage.registry import forget_serving_triage_model, register_triage_result
from scoring.triage.serving import forget_incident_index
from tests.template_database import (
    TableRows,
    drop_own,
    drop_templates,
    emptying,
    keeps_template,
    made_once_per_run,
    setup_from_template,
    uses_template,
)
from warden_agent.argv import argv_digest

# Metrics of a healthy host, and of each seed scenario at its worst.
HEALTHY = {
    "disk_usage": 45.0,
    "memory_usage": 50.0,
    "cpu_usage": 25.0,
    "dns_latency_ms": 18.0,
    "firewall_change_requested": 0,
}
PROBLEMS = {
    "disk": {"disk_usage": 97.0},
    "memory": {"memory_usage": 97.0},
    "cpu": {"cpu_usage": 99.0},
    "dns": {"dns_latency_ms": 650.0},
    "firewall": {"firewall_change_requested": 1},
}


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """pytest-django's set-up, but on PostgreSQL under xdist each worker copies the run's
    one migrated template instead of migrating its own (tests/template_database.py)."""
    from django.test.utils import setup_databases
    from pytest_django.fixtures import _get_databases_for_setup

    aliases, serialized_aliases = _get_databases_for_setup(request.session.items)
    verbosity = request.config.option.verbose
    with django_db_blocker.unblock():
        if uses_template():
            db_cfg = setup_from_template(verbosity, serialized_aliases)
        else:
            db_cfg = setup_databases(
                verbosity=verbosity,
                interactive=False,
                aliases=aliases,
                serialized_aliases=serialized_aliases,
            )
    yield
    with django_db_blocker.unblock():
        drop_own(db_cfg)


@pytest.fixture(autouse=True)
def _partitions_known_as_the_database_has_them() -> Iterator[None]:
    """Ingest caches the partitions it saw made (scoring.partitions). A test rolls back the
    ones it made, after running their on-commit callbacks as if they had committed."""
    from scoring import partitions

    before = {database: set(known) for database, known in partitions._known.items()}
    yield
    partitions._known.clear()
    partitions._known.update(before)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `early` tests first: long runs of whole programs that use no test database.
    Under xdist they keep two workers busy while the third migrates the run's template
    (tests/template_database.py), instead of two waiting then and the three ending
    unevenly. pytest-django has put every test that uses no database last; among the
    others its order stands (a transactional test empties the database for the next)."""
    early = [item for item in items if item.get_closest_marker("early")]
    for item in early:
        # django_db_setup: what db, transactional_db and live_server all stand on.
        uses_database = "django_db_setup" in getattr(item, "fixturenames", ())
        if uses_database or item.get_closest_marker("django_db"):
            raise pytest.UsageError(f"{item.nodeid}: an early test may not use the database")
    rest = [item for item in items if not item.get_closest_marker("early")]
    items[:] = early + rest


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's template goes when it ends (on PostgreSQL): dropped by an xdist run's
    controller, or by the last run of `make test`; never by a worker."""
    from pytest_django.plugin import blocking_manager_key

    config = session.config
    if hasattr(config, "workerinput") or keeps_template():
        return
    if not (config.pluginmanager.has_plugin("dsession") or os.environ.get("WARDEN_TEST_RUN")):
        return
    with config.stash[blocking_manager_key].unblock():
        drop_templates(django_settings.DATABASES["default"]["NAME"])


@pytest.fixture(scope="session", autouse=True)
def flush_may_empty_the_audit_log() -> Any:
    """Transactional tests empty the database after each test with `flush`; the audit log's
    triggers refuse that outside maintenance (governance/audit/log.py), so flush enters it."""
    from django.core.management.commands.flush import Command
    from django.db.backends.base.creation import BaseDatabaseCreation

    original = Command.handle

    def handle(self: Any, **options: Any) -> Any:
        with audit_maintenance():
            return original(self, **options)

    # serialized_rollback writes back every row the migrations made, the audit events of
    # the state they installed among them (governance.audit.state_checks): also maintenance.
    deserialize = BaseDatabaseCreation.deserialize_db_from_string

    def deserialize_db_from_string(self: Any, data: Any) -> None:
        with audit_maintenance():
            if isinstance(data, TableRows):
                data.restore(self.connection)
            else:
                deserialize(self, data)

    # On PostgreSQL flush empties the tables with DELETE (tests.template_database.emptying):
    # the few rows a test leaves go in milliseconds.
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self: Any, style: Any, tables: Any, **options: Any) -> list[str]:
        if options.get("reset_sequences") or not tables:
            return truncate(self, style, tables, **options)
        return [emptying(self.quote_name, tables)]

    Command.handle = handle
    BaseDatabaseCreation.deserialize_db_from_string = deserialize_db_from_string
    DatabaseOperations.sql_flush = sql_flush
    yield
    Command.handle = original
    BaseDatabaseCreation.deserialize_db_from_string = deserialize
    DatabaseOperations.sql_flush = truncate


@pytest.fixture(scope="session", autouse=True)
def channel_groups_of_this_worker() -> Iterator[None]:
    """Under pytest-xdist (`make test`) each worker has its own test database but all share
    REDIS_URL: each worker's channel groups get a prefix of their own, so a console opened
    by one worker's test hears only that worker's events. tests/integration, run by one
    worker at a time, go back to the default prefix the processes they start use."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    layers = django_settings.CHANNEL_LAYERS
    if not worker or "redis" not in layers["default"]["BACKEND"].lower():
        yield
        return
    own = copy.deepcopy(layers)
    own["default"]["CONFIG"]["prefix"] = f"asgi-{worker}"
    with override_settings(CHANNEL_LAYERS=own):  # channels drops the layers it made
        yield


@pytest.fixture(autouse=True)
def channel_layers_of_this_test() -> Iterator[None]:
    """Each test's sockets on channel layers of their own. A test runs its event loop with
    asyncio.run, and a channels-redis layer keeps its receiving state across loops: a
    receive the last test's loop left behind kept a later test's loop from closing."""
    from channels.layers import channel_layers

    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture(scope="session", autouse=True)
def passwords_hashed_fast() -> Iterator[None]:
    """A password set or checked in a test is hashed with MD5, not 1,000,000 rounds of
    PBKDF2 (half a second each); production's hashers stay next in the list, so what a
    test asserts about hashing (a hash, never the password, in the audit) still holds."""
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher", *django_settings.PASSWORD_HASHERS]
    with override_settings(PASSWORD_HASHERS=fast):
        yield


@pytest.fixture(scope="session", autouse=True)
def static_files_listed_once() -> Iterator[None]:
    """Each test client builds the middleware again, and WhiteNoise's lists every app's
    static files each time (about 12 ms of CPU, thousands of times a run): list them once
    per set of apps and finders, and give every later middleware the same files."""
    listed: dict[tuple, dict] = {}
    original = StaticFilesMiddleware.add_files_from_finders

    def add_files_from_finders(self: StaticFilesMiddleware) -> None:
        s = django_settings
        key = (
            self.static_prefix,
            tuple(s.INSTALLED_APPS),
            tuple(str(d) for d in s.STATICFILES_DIRS),
            tuple(s.STATICFILES_FINDERS),
        )
        if key not in listed:
            before = dict(self.files)
            original(self)
            listed[key] = {url: f for url, f in self.files.items() if before.get(url) is not f}
        self.files.update(listed[key])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StaticFilesMiddleware, "add_files_from_finders", add_files_from_finders)
        yield


@pytest.fixture(autouse=True)
def tasks_run_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """django-q2 runs each task at once, in-process, when it is enqueued (after commit)."""
    monkeypatch.setattr(Conf, "SYNC", True)


def requires_servers() -> bool:
    return bool(os.environ.get("CI"))


# The self-healing policies as an operator who trusts Warden from the first ticket sets
# them (the defaults before the seed's numbers): tests whose subject is how an automatic
# remediation runs, not whether one is decided, start from there.
TRUSTING = {"min_similar_tickets": 0, "min_reliability_score": 45.0}


def trust_from_the_first_ticket() -> None:
    """Disk, memory and CPU heal from the first confident ticket: each self-healing policy
    saved as a new version by the normal policy change, audited like any operator's."""
    from governance.models import Policy
    from governance.policies.actions import save_policy

    for policy in Policy.objects.filter(name__endswith="-self-healing"):
        for field, value in TRUSTING.items():
            setattr(policy, field, value)
        save_policy(
            policy,
            actor=None,
            reason="trusting from the first ticket (tests of execution mechanics)",
            now=timezone.now(),
        )


@pytest.fixture
def trusting_policies(db: None) -> None:
    """The self-healing policies trust from the first ticket (trust_from_the_first_ticket)."""
    trust_from_the_first_ticket()


class SkopsOnce:
    """skops' work on identical content done once per test process.

    Each test with an approved model saves the session's estimator as a new version and
    loads it back (approval checks the file, serving loads it): about half a second of
    skops each time, the same bytes every time. Here dumping an estimator already dumped
    (equal by its pickle) returns the same bytes, listing the types of bytes already
    listed returns the same list, and loading bytes this process dumped returns a copy of
    what skops loaded from them the first time. Everything else (a tampered or hand-made
    file, a type outside the allow-list) goes through skops as in production.
    """

    KEEP = 16  # distinct contents remembered: a test training its own model adds one

    def __init__(self) -> None:
        import skops.io

        self.dumps, self.loads = skops.io.dumps, skops.io.loads
        self.untrusted = skops.io.get_untrusted_types
        self.dumped: dict[bytes, bytes] = {}  # sha256 of the pickle -> skops bytes
        self.ours: set[bytes] = set()  # sha256 of bytes dumped here
        self.listed: dict[bytes, list[str]] = {}
        # What skops loaded, pickled: each test gets its own copy (pickle.loads copies a
        # fitted pipeline three times faster than copy.deepcopy).
        self.loaded: dict[tuple[bytes, tuple[str, ...]], bytes] = {}

    @staticmethod
    def digest(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def remember(self, cache: dict, key: Any, value: Any) -> Any:
        if len(cache) >= self.KEEP:
            cache.pop(next(iter(cache)))
        cache[key] = value
        return value

    def cached_dumps(self, obj: Any, *args: Any, **kwargs: Any) -> bytes:
        try:
            key = self.digest(pickle.dumps(obj))
        except Exception:  # not picklable: no key to know it by
            return self.dumps(obj, *args, **kwargs)
        if args or kwargs or key not in self.dumped:
            data = self.dumps(obj, *args, **kwargs)
            if args or kwargs:
                return data
            self.remember(self.dumped, key, data)
            self.ours.add(self.digest(data))
        return self.dumped[key]

    def cached_untrusted(self, *, data: Any = None, file: Any = None) -> list[str]:
        if data is None or file is not None:
            return self.untrusted(data=data, file=file)
        key = self.digest(data)
        if key not in self.listed:
            self.remember(self.listed, key, self.untrusted(data=data))
        return list(self.listed[key])

    def cached_loads(self, data: bytes, trusted: Any = None) -> Any:
        digest = self.digest(data)
        key = (digest, tuple(trusted or ()))
        if key in self.loaded:
            return pickle.loads(self.loaded[key])
        obj = self.loads(data, trusted=trusted)
        if digest in self.ours:
            self.remember(self.loaded, key, pickle.dumps(obj))
        return obj


@pytest.fixture(scope="session", autouse=True)
def skops_once() -> Iterator[None]:
    """SkopsOnce for the whole session (its saving is most of an approved model's set-up)."""
    import skops.io

    once = SkopsOnce()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(skops.io, "dumps", once.cached_dumps)
        patch.setattr(skops.io, "loads", once.cached_loads)
        patch.setattr(skops.io, "get_untrusted_types", once.cached_untrusted)
        yield


@pytest.fixture(scope="session")
def trained_model() -> Any:
    """The default model, trained once per test run (a few seconds)."""

    def train() -> Any:
        fit = generate_dataset(DEFAULT_TRAIN_HOSTS, DEFAULT_STEPS, TRAIN_SEED)
        held_out = generate_dataset(DEFAULT_EVAL_HOSTS, DEFAULT_STEPS, EVAL_SEED, label_noise=0.0)
        return train_severity_model(fit.X, fit.y, held_out.X, held_out.y, seed=TRAIN_SEED)

    return made_once_per_run("severity", train)


@pytest.fixture
def approved_model(db: None, trained_model: Any, settings: Any, tmp_path: Any) -> Any:
    settings.MODEL_DIR = tmp_path / "models"
    settings.WARDEN_MODEL_REFRESH_SECONDS = 0
    forget_serving_model()
    version = register_training_result(trained_model, actor="system:test")
    approve_model_version(version, actor=None, now=timezone.now(), reason="")
    yield version
    forget_serving_model()


# What `train_triage_model` chooses on the shipped corpus (its out-of-fold scan); the quick
# fixture takes it instead of scanning, which costs four more fits.
TRIAGE_TEST_THRESHOLD = 0.75


@pytest.fixture(scope="session")
def trained_triage_model() -> TriageTrainingResult:
    """The triage model fitted once per test run on the shipped corpus (about a second)."""

    def train() -> TriageTrainingResult:
        incidents = load_corpus()
        return train_triage_model(
            [i.text for i in incidents],
            [label_of(i.category, i.runbook) for i in incidents],
            {name: risk for name, (_, risk) in CATALOGUE.items()},
            groups=[i.phrasing for i in incidents],
            threshold=TRIAGE_TEST_THRESHOLD,
        )

    return made_once_per_run("triage", train)


@pytest.fixture
def triage_model(
    db: None, trained_triage_model: TriageTrainingResult, settings: Any, tmp_path: Any
) -> Any:
    """An approved triage model version (opt in by name): triage_texts and similar_incidents
    answer at once, and see resolved tickets without waiting for a refresh."""
    settings.MODEL_DIR = tmp_path / "models"
    settings.WARDEN_MODEL_REFRESH_SECONDS = 0
    settings.WARDEN_TRIAGE_INDEX_REFRESH_SECONDS = 0
    forget_serving_triage_model()
    forget_incident_index()
    version = register_triage_result(trained_triage_model, actor="system:test")
    approve_triage_model_version(version, actor=None, now=timezone.now(), reason="")
    yield version
    forget_serving_triage_model()
    forget_incident_index()


def make_user(username: str, group: str) -> User:
    user = User.objects.create_user(username, email=f"{username}@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def alice(db: None) -> User:
    return make_user("alice", "supervisors")


@pytest.fixture
def bob(db: None) -> User:
    return make_user("bob", "approvers")


@pytest.fixture
def carol(db: None) -> User:
    return make_user("carol", "approvers")


@pytest.fixture
def dave(db: None) -> User:
    return make_user("dave", "compliance")


class AgentClient:
    """Talks to the API as one host's agent would, running on-commit work like production."""

    def __init__(self, client: Any, host: Any, key: str, capture: Any) -> None:
        self.client = client
        self.host = host
        self.key = key
        self.capture = capture
        self.clock = timezone.now() - timedelta(minutes=30)

    def sample(self, problem: str | None = None, **metrics: Any) -> dict:
        """A reading taken now (and after the previous one): healthy, or showing `problem`."""
        self.clock = max(self.clock + timedelta(seconds=1), timezone.now())
        values = {**HEALTHY, **(PROBLEMS[problem] if problem else {}), **metrics}
        return {"host": self.host.name, "taken_at": self.clock.isoformat(), **values}

    def post(self, path: str, payload: Any, key: str | None = None) -> Any:
        body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        with self.capture(execute=True):
            return self.client.post(
                path,
                data=body,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key or self.key}",
            )

    def post_metrics(self, payload: Any, key: str | None = None) -> Any:
        return self.post("/api/v1/metrics", payload, key)

    def take_actions(self, *, start: bool = True) -> list[dict]:
        """Poll for actions and, as a faithful agent does before it runs one, say each
        started (unless `start` is False: an agent that took them and went away)."""
        with self.capture(execute=True):
            response = self.client.get(
                "/api/v1/agent/actions", HTTP_AUTHORIZATION=f"Bearer {self.key}"
            )
        assert response.status_code == 200, response.content
        actions = response.json()["actions"]
        if start:
            for action in actions:
                started = self.start(action)
                assert started.status_code == 200, started.content
        return actions

    def start(self, action: dict) -> Any:
        """Say the action taken is starting now (POST .../started with its token)."""
        return self.post(
            f"/api/v1/agent/actions/{action['execution_id']}/started", {"token": action["token"]}
        )

    def report(
        self,
        action: dict,
        ok: bool = True,
        output: str = "done",
        *,
        argv: list[str] | None = None,
        exit_code: int | None = None,
        not_started: bool = False,
    ) -> Any:
        """Report as a faithful agent does: the argv it was sent, unless told otherwise (or
        nothing, `not_started`)."""
        ran = [] if not_started else list(action.get("argv", [])) if argv is None else argv
        return self.post(
            f"/api/v1/agent/actions/{action['execution_id']}/result",
            {
                "token": action["token"],
                "ok": ok and not not_started,
                "output": output,
                "argv": ran,
                "argv_digest": argv_digest(ran) if ran else "",
                "exit_code": (0 if ok else 1) if exit_code is None and ran else exit_code,
                **({"not_started": True} if not_started else {}),
            },
        )


@pytest.fixture
def agent(
    db: None, client: Any, approved_model: Any, django_capture_on_commit_callbacks: Any
) -> AgentClient:
    host, key = add_host("web-01", labels={"env": "test"}, now=timezone.now())
    return AgentClient(client, host, key, django_capture_on_commit_callbacks)


@pytest.fixture
def other_agent(
    db: None, client: Any, approved_model: Any, django_capture_on_commit_callbacks: Any
) -> AgentClient:
    host, key = add_host("web-02", labels={"env": "test"}, now=timezone.now())
    return AgentClient(client, host, key, django_capture_on_commit_callbacks)


# --- People and services over the API, with real tokens ------------------------------------


def token_for(user: User, days: int = 30) -> str:
    """A fresh API token of `user` (issued as `manage.py create_api_token` does)."""
    _, key = issue_api_token(user, actor=None, expiry_days=days, reason="test", now=timezone.now())
    return key


class Api:
    """A client sending one user's token, as another system would."""

    def __init__(self, key: str, capture: Any = None) -> None:
        self.client = Client(headers={"authorization": f"Token {key}"})
        self.capture = capture

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params)

    def post(self, path: str, body: Any) -> Any:
        payload = body if isinstance(body, str) else json.dumps(body)
        if self.capture is None:
            return self.client.post(path, payload, content_type="application/json")
        with self.capture(execute=True):
            return self.client.post(path, payload, content_type="application/json")


@pytest.fixture
def api(db: None, django_capture_on_commit_callbacks: Any) -> Any:
    """api(user): a client holding a new token of `user`, running on-commit work."""

    def as_user(user: User) -> Api:
        return Api(token_for(user), django_capture_on_commit_callbacks)

    return as_user
