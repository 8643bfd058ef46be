"""gunicorn's settings for the roles that take agents' metrics (the web role, and the demo's
one server): `gunicorn -c config/gunicorn.py ...`.

The arbiter imports Django and every view and loads the approved severity model once, then
forks its workers with all of it loaded (preload_app). A worker, started or restarted after
a crash, takes requests at once: on its own it spent about 2.5 s of CPU first, while the
requests of a busy fleet queued behind it (a 10,000-host fleet's first second waited up to
1 s). The workers also share those pages with the arbiter (copy-on-write, kept so by
gc.freeze). Nothing that cannot cross a fork stays open in the arbiter: its database
connections and their pools are closed before the first fork. A release is rolled out by
restarting the processes, as a container's roll-out does: a HUP reloads the configuration,
not the code.
"""

from typing import Any

preload_app = True


def when_ready(server: Any) -> None:
    """In the arbiter, after the application is loaded and before any worker is forked."""
    from config.warm import warm_up

    warm_up(before_fork=True)


def post_worker_init(worker: Any) -> None:
    """In each worker: its own database pool, opened before its first request."""
    from config.warm import open_database_pool

    open_database_pool()
