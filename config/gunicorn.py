"""gunicorn's settings for the roles that take agents' metrics (the web role, and the demo's
one server): `gunicorn -c config/gunicorn.py ...`.

The arbiter loads Django, every view and the approved severity model once, then forks its
workers with them loaded (preload_app): a worker (started, or restarted after a crash)
takes requests at once instead of first spending about 2.5 s of CPU on its own imports and
model, while the requests a busy fleet sends it queue behind (a 10,000-host fleet's first
second waited up to 1 s), and the workers share those pages with the arbiter
(copy-on-write, kept so by gc.freeze). Nothing that cannot cross a fork is left open in the
arbiter: its database connections and their pools are closed before the first fork. A
new release needs the processes restarted (as a container's roll-out does): a HUP reloads
the configuration, not the code.
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
