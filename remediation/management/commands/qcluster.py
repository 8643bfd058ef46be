"""django-q2's qcluster as Warden's worker role runs it (deploy/entrypoint.sh worker).

It takes the place of django-q2's command (remediation comes before django_q in
INSTALLED_APPS) and adds two things:

- The cluster's processes die with their parent. Each process it forks (the sentinel,
  then the sentinel's workers, pusher and monitor) asks the kernel for SIGKILL when its
  parent dies (Linux's PR_SET_PDEATHSIG), so killing the main process, even with kill -9,
  leaves no orphaned cluster taking tasks beside the one that replaces it. What a killed
  worker was doing is repaired as any crash is: the execution's row is the truth.
- Its main process, which django-q2 leaves waiting for the sentinel, looks every
  WARDEN_REQUEUE_CHECK_SECONDS for queued executions whose dispatch task was lost
  (remediation.executions.sweeps.requeue_lost), and when it starts for every queued one,
  since the tasks a cluster that died had taken went with it.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_q.management.commands.qcluster import Command as DjangoQCommand

from remediation.executions.sweeps import requeue_lost

logger = logging.getLogger("warden.worker")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Command(DjangoQCommand):
    help = (
        "Start the django-q2 cluster (the worker role): its processes die with it, and lost "
        "dispatch tasks are enqueued again within seconds."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        die_with_parent_after_fork()
        super().handle(*args, **options)  # returns once the cluster runs, or --run-once ran
        watch_for_lost_dispatches()


def die_with_parent_after_fork() -> None:
    """Every process this one forks from now on, and theirs, gets SIGKILL when its parent
    dies. No effect where the kernel has no such request (not Linux)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    parent = {"pid": os.getpid()}

    def before_fork() -> None:
        parent["pid"] = os.getpid()

    def in_child() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent["pid"]:  # the parent died before the request was made
            os._exit(1)

    os.register_at_fork(before=before_fork, after_in_child=in_child)


def watch_for_lost_dispatches() -> None:
    """While the cluster runs (its sentinel, this process's one child, is alive): enqueue
    again every queued execution at once, then those lost since, every few seconds."""
    lost_after = timedelta(0)  # at start: whatever a cluster before this one had taken
    failing = False
    while multiprocessing.active_children():
        try:
            if requeued := requeue_lost(timezone.now(), lost_after):
                logger.warning("enqueued %s lost dispatch task(s) again", requeued)
            failing = False
        except Exception as exc:  # the database or the broker is away: look again later
            if not failing:
                logger.warning("could not look for lost dispatch tasks: %s", exc)
            failing = True
        finally:
            connection.close()
        lost_after = timedelta(seconds=settings.WARDEN_REQUEUE_AFTER_SECONDS)
        time.sleep(settings.WARDEN_REQUEUE_CHECK_SECONDS)
