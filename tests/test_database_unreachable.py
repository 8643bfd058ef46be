"""A process that just waited for PostgreSQL in vain answers at once for a moment after
(config/postgresql): with PostgreSQL down, a worker does not spend the pool's whole wait
on every request, and answers stay under a second instead of queueing."""

import pytest
from django.db import OperationalError
from django.db.utils import ConnectionHandler

from config.postgresql import base
from tests.integration.conftest import free_port


@pytest.fixture
def nowhere(django_db_blocker):
    """A pooled connection to a port where no PostgreSQL listens."""
    handler = ConnectionHandler(
        {
            "default": {"ENGINE": "django.db.backends.dummy"},
            "nowhere": {
                "ENGINE": "config.postgresql",
                "HOST": "127.0.0.1",
                "PORT": free_port(),
                "NAME": "warden",
                "USER": "warden",
                "OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 0.3}},
            },
        }
    )
    connection = handler["nowhere"]
    with django_db_blocker.unblock():  # a database of its own, not the tests'
        yield connection
    connection.close_pool()
    base.unreachable.until = 0.0


def test_after_one_wait_in_vain_requests_fail_at_once_then_try_again(nowhere):
    # given one request that waited for a connection in vain
    with pytest.raises(OperationalError, match="couldn't get a connection"):
        nowhere.ensure_connection()

    # then the next one is told at once, without waiting
    with pytest.raises(OperationalError, match="unreachable a moment ago"):
        nowhere.ensure_connection()

    # and once the moment has passed, a request tries again
    base.unreachable.until = 0.0
    with pytest.raises(OperationalError, match="couldn't get a connection"):
        nowhere.ensure_connection()
