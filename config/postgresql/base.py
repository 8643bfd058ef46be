"""Django's PostgreSQL backend (psycopg, its pool) with one change: a process that just
waited DB_POOL_TIMEOUT for a connection in vain does not wait again for a moment.

With PostgreSQL down or out of connections, every request would otherwise hold its worker
for the pool's whole wait before answering 503, and a sync worker that waits cannot answer
anyone else: the answers queue and grow to seconds. Instead, for UNREACHABLE_SECONDS after
a wait that failed, a request of this process fails at once with the same OperationalError
(a 503 with Retry-After, config/api_errors.py); the first request after that tries again,
so Warden sees PostgreSQL back within that second and the pool's own retry.
"""

import threading
import time

from django.db.backends.postgresql import base
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

UNREACHABLE_SECONDS = 1.0


class Unreachable:
    """When this process last waited for a connection in vain, shared by its threads."""

    def __init__(self) -> None:
        self.until = 0.0
        self.lock = threading.Lock()

    def check(self) -> None:
        if time.monotonic() < self.until:
            raise OperationalError(
                "PostgreSQL was unreachable a moment ago; not waiting for it again yet"
            )

    def failed(self) -> None:
        with self.lock:
            self.until = time.monotonic() + UNREACHABLE_SECONDS


unreachable = Unreachable()


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict) -> object:
        if self.pool is None:
            return super().get_new_connection(conn_params)
        unreachable.check()
        try:
            return super().get_new_connection(conn_params)
        except PoolTimeout:
            unreachable.failed()
            raise
