"""One migrated test database per run, copied for each pytest-xdist worker.

Migrating Warden's schema costs each worker 15-20 s of CPU; under `make test` the workers
share two cores, so three migrations side by side cost most of a minute. On PostgreSQL the
first worker migrates a template database, under a file lock, and every worker (the first
included) takes its own copy with CREATE DATABASE ... TEMPLATE, as Django's own parallel
runner clones its test database. On SQLite the first worker saves its migrated in-memory
database to a file, and the others restore it into theirs with SQLite's backup API. The
controller drops the template when the run ends, unless `make test` keeps it for its
integration run, which copies it too and drops it.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from django.db import connections


def run_id() -> str | None:
    """The run's id: `make test` names one for both of its pytest runs (WARDEN_TEST_RUN), so
    the integration tests copy the template the others made; else the xdist run's, shared by
    its workers (None without either)."""
    return os.environ.get("WARDEN_TEST_RUN") or os.environ.get("PYTEST_XDIST_TESTRUNUID")


def keeps_template() -> bool:
    """Whether this run leaves its template for the next run of the same id (`make test`)."""
    return bool(os.environ.get("WARDEN_TEST_KEEP_TEMPLATE"))


def uses_template(alias: str = "default") -> bool:
    return bool(run_id()) and connections[alias].vendor in ("postgresql", "sqlite")


SQLITE_PREFIX = "warden-test-sqlite-"


def sqlite_template(run: str) -> Path:
    """SQLite's template: the migrated in-memory database saved to a file, which each
    worker restores into its own in-memory database with SQLite's backup API."""
    return Path(tempfile.gettempdir()) / f"{SQLITE_PREFIX}{run[:12]}.sqlite3"


def template_prefix(base_name: str) -> str:
    return f"test_{base_name}"[:40] + "_tpl_"


def template_name(base_name: str, run: str) -> str:
    """The run's template database: a name PostgreSQL keeps whole (63 bytes at most)."""
    return template_prefix(base_name) + run[:12]


def lock_path(template: str) -> Path:
    return Path(tempfile.gettempdir()) / f"warden-{template}.lock"


@contextmanager
def run_lock(template: str) -> Iterator[None]:
    with lock_path(template).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _exists(connection: Any, name: str) -> bool:
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


def setup_from_template(
    verbosity: int, serialized_aliases: set[str], alias: str = "default"
) -> list[tuple[Any, str, bool]]:
    """This worker's test database, a copy of the run's migrated template; what Django's
    teardown_databases takes to drop it afterwards."""
    connection = connections[alias]
    if connection.vendor == "sqlite":
        return _setup_sqlite_from_template(verbosity, serialized_aliases, alias)
    creation = connection.creation
    run = run_id()
    assert run is not None
    base_name = connection.settings_dict["NAME"]
    own_name = creation._get_test_db_name()  # test_<name>_gwN: pytest-django's suffix
    template = template_name(base_name, run)
    test_settings = connection.settings_dict["TEST"]
    with run_lock(template):
        if not _exists(connection, template):
            test_settings["NAME"] = template
            creation.create_test_db(verbosity=verbosity, autoclobber=True, serialize=False)
            # Back to the real database's settings, so the copy is made from outside it.
            connection.settings_dict["NAME"] = base_name
            test_settings["NAME"] = own_name
        connection.close()
        connection.close_pool()  # CREATE DATABASE ... TEMPLATE needs the template unused
        quote = connection.ops.quote_name
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {quote(own_name)}")
            cursor.execute(f"CREATE DATABASE {quote(own_name)} WITH TEMPLATE {quote(template)}")
    from django.conf import settings

    settings.DATABASES[alias]["NAME"] = own_name
    connection.settings_dict["NAME"] = own_name
    if alias in serialized_aliases:
        # What serialized_rollback writes back after a transactional test.
        connection._test_serialized_contents = TableRows.of(connection)
    return [(connection, base_name, True)]


def _setup_sqlite_from_template(
    verbosity: int, serialized_aliases: set[str], alias: str
) -> list[tuple[Any, str, bool]]:
    import sqlite3

    from django.conf import settings

    connection = connections[alias]
    creation = connection.creation
    run = run_id()
    assert run is not None
    base_name = connection.settings_dict["NAME"]
    template = sqlite_template(run)
    with run_lock(template.stem):
        if not template.exists():
            creation.create_test_db(verbosity=verbosity, autoclobber=True, serialize=False)
            partial = template.with_suffix(".partial")
            target = sqlite3.connect(partial)
            try:
                connection.connection.backup(target)
            finally:
                target.close()
            partial.replace(template)
        else:
            test_name = creation._get_test_db_name()
            settings.DATABASES[alias]["NAME"] = test_name
            connection.settings_dict["NAME"] = test_name
            connection.close()
            connection.ensure_connection()
            source = sqlite3.connect(template)
            try:
                source.backup(connection.connection)
            finally:
                source.close()
    if alias in serialized_aliases:
        connection._test_serialized_contents = creation.serialize_db_to_string()
    return [(connection, base_name, True)]


def emptying(quote: Callable[[str], str], tables: Iterable[str]) -> str:
    """One round trip that empties `tables` on PostgreSQL: DELETE, not TRUNCATE, which gives
    each of the schema's hundreds of tables and indexes a new file (about 0.3 s a test
    flush); foreign keys are checked when the transaction commits."""
    deletes = "; ".join(f"DELETE FROM {quote(table)}" for table in tables)
    return f"SET CONSTRAINTS ALL DEFERRED; {deletes}"


class TableRows:
    """PostgreSQL's migrated rows, as serialized_rollback writes them back before each
    transactional test: COPY, table by table, rather than Django's serialize_db_to_string,
    which saves some 750 objects one statement at a time. The 71 transactional tests alone
    on three workers: 105-106 s against 120-134 s. SQLite keeps Django's way."""

    def __init__(self, tables: dict[str, bytes]) -> None:
        self.tables = tables  # each table with rows -> COPY's binary rows

    @classmethod
    def of(cls, connection: Any) -> TableRows:
        """The rows of every table flush empties (every model's)."""
        quote = connection.ops.quote_name
        tables: dict[str, bytes] = {}
        with connection.cursor() as cursor:
            for name in connection.introspection.django_table_names(only_existing=True):
                cursor.execute(f"SELECT EXISTS (SELECT FROM {quote(name)})")
                if not cursor.fetchone()[0]:
                    continue
                # A query, not the table: COPY TO refuses a partitioned table.
                command = f"COPY (SELECT * FROM {quote(name)}) TO STDOUT (FORMAT binary)"
                with cursor.cursor.copy(command) as copy:
                    tables[name] = b"".join(bytes(block) for block in copy)
        return cls(tables)

    def restore(self, connection: Any) -> None:
        """Write the rows back in the caller's transaction (its foreign keys are checked
        when it commits): into tables a flush emptied, or still as migrated (the first
        transactional test follows others that rolled back), so each is emptied first."""
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(emptying(quote, self.tables))
            for name, rows in self.tables.items():
                with cursor.cursor.copy(f"COPY {quote(name)} FROM STDIN (FORMAT binary)") as copy:
                    copy.write(rows)


T = TypeVar("T")
TRAINED_PREFIX = "warden-test-trained-"


def made_once_per_run(name: str, make: Callable[[], T]) -> T:
    """What `make()` returns, made by the run's first worker to ask and read back from a file
    by the others: the session's trained models, each a few seconds of CPU per worker, the
    same everywhere (their seeds are fixed)."""
    run = run_id()
    if run is None:
        return make()
    path = Path(tempfile.gettempdir()) / f"{TRAINED_PREFIX}{run[:12]}-{name}.pickle"
    with run_lock(path.stem):
        if path.exists():
            # Unpickling runs code: only a file this user wrote (the temporary folder is
            # shared, and `make test`'s run id is its process id).
            if path.stat().st_uid != os.getuid():
                raise RuntimeError(f"{path} belongs to another user: remove it")
            return pickle.loads(path.read_bytes())
        made = make()
        partial = path.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(made))
        partial.replace(path)
        return made


def drop_own(db_cfg: list[tuple[Any, str, bool]]) -> None:
    """A test database dropped at its run's end (a worker's copy, or a run's own without
    xdist), even if a session a test left open (a thread's connection, a pool's) still
    holds it: Django's plain DROP DATABASE would fail there."""
    for connection, base_name, destroy in db_cfg:
        if not destroy:  # kept (--reuse-db), or a mirror of another alias
            continue
        if connection.vendor != "postgresql":  # an in-memory SQLite database ends with its process
            connection.creation.destroy_test_db(base_name, verbosity=0)
            continue
        own_name = connection.settings_dict["NAME"]
        connection.close()
        connection.close_pool()
        connection.settings_dict["NAME"] = base_name
        with connection._nodb_cursor() as cursor:
            cursor.execute(
                f"DROP DATABASE IF EXISTS {connection.ops.quote_name(own_name)} WITH (FORCE)"
            )


def drop_templates(base_name: str) -> None:
    """At an xdist run's end, in its controller (which never opens them): drop the
    templates of runs on this database, and the trained models workers shared (the
    controller is not told its run's id)."""
    for path in Path(tempfile.gettempdir()).glob(f"{TRAINED_PREFIX}*.pickle"):
        path.unlink(missing_ok=True)
        lock_path(path.stem).unlink(missing_ok=True)
    connection = connections["default"]
    if connection.vendor == "sqlite":
        for path in Path(tempfile.gettempdir()).glob(f"{SQLITE_PREFIX}*"):
            path.unlink(missing_ok=True)
            lock_path(path.stem).unlink(missing_ok=True)
        return
    if connection.vendor != "postgresql":
        return
    prefix = template_prefix(base_name)
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix])
        for (name,) in cursor.fetchall():
            cursor.execute(
                f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)} WITH (FORCE)"
            )
            lock_path(name).unlink(missing_ok=True)
