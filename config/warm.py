"""Readying a server process before its first request (config/gunicorn.py)."""

import gc
import logging

from django.db import connections
from django.urls import get_resolver

from scoring.registry import NoApprovedModel, serving_model

logger = logging.getLogger(__name__)


def warm_up(before_fork: bool = False) -> None:
    """Import every URL and view, load the approved severity model into this process, and
    freeze what is loaded out of the garbage collector's way. `before_fork`: this process
    forks the workers (gunicorn's arbiter), so it closes its connection pools too, whose
    connections and threads a forked copy could not use.

    Without an approved model, or with the database not up yet, the process starts all
    the same: its first metrics post loads the model, as it did before.
    """
    get_resolver().url_patterns  # noqa: B018  (imports the URLconf and every view)
    try:
        version = serving_model().version
    except NoApprovedModel:
        logger.info("ready; no severity model is approved yet")
    except Exception as error:  # the database not up: the first post loads the model
        logger.warning("ready without the severity model (%s): the first post loads it", error)
    else:
        logger.info("ready with severity model v%s", version)
    finally:
        # Between requests a worker keeps no connection but its pool's.
        connections.close_all()
        if before_fork:
            for connection in connections.all(initialized_only=True):
                if connection.vendor == "postgresql":
                    connection.close_pool()
    # Django, the views and the model are about 230,000 objects that live as long as the
    # process: each full collection walked them all (120 ms on an idle core), stalling the
    # request it struck. Frozen, a collection walks only what requests make.
    gc.collect()
    gc.freeze()


def open_database_pool() -> None:
    """Open this process's database pool before its first request (a forked worker's);
    with the database not up, its first request opens it."""
    connection = connections["default"]
    try:
        connection.ensure_connection()
    except Exception as error:
        logger.warning("started without a database connection (%s)", error)
    finally:
        connection.close()
