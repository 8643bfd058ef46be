"""gunicorn configuration for bench/: each worker times the stages of its requests.

    gunicorn -c bench/profiled_gunicorn.py config.wsgi:application ...

Each worker wraps the functions that make up a request's stages (STAGES) and adds up
the CPU time of its thread spent in each, exclusive of the stages nested in it (a
statement run by the authentication counts as authentication). The CPU clock, not
the wall clock: waiting on PostgreSQL or for a core on a busy machine counts for
nothing, so the figures hold on a shared machine, and the wrappers cost a few
microseconds a request, not the factor a tracing profiler adds to Django's many small
calls. Timing starts at the first request after $BENCH_PROFILE_DIR/on exists (so
start-up and warm-up stay out) and each worker writes stage-PID.json when it exits.
bench/bench_serving.py --profile reads them.
"""

import functools
import gc
import importlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# (stage, [(module, attribute path), ...]) in no particular order: nesting decides.
STAGES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Django: handler, middleware, URL", [("django.core.handlers.wsgi", "WSGIHandler.__call__")]),
    ("view: the rest", [("rest_framework.views", "APIView.dispatch")]),
    (
        "Django: request finished (signals)",
        [("django.http.response", "HttpResponseBase.close")],
    ),
    ("authentication: key to host", [("rest_framework.request", "Request._authenticate")]),
    (
        "parse and validate the body",
        [("remediation.api.views", "parse_batch"), ("bench.floor_urls", "validate_batch")],
    ),
    (
        "model: features, classify",
        [
            ("remediation.pipeline", "serving_model"),
            ("remediation.pipeline", "build_features"),
            ("remediation.pipeline", "classify"),
        ],
    ),
    (
        "statements (client side)",
        [
            ("django.db.backends.utils", "CursorWrapper._execute"),
            ("django.db.backends.utils", "CursorWrapper._executemany"),
        ],
    ),
    ("commit", [("django.db.backends.base.base", "BaseDatabaseWrapper.commit")]),
    (
        "pool: take and give back a connection",
        [
            ("django.db.backends.base.base", "BaseDatabaseWrapper.connect"),
            ("django.db.backends.base.base", "BaseDatabaseWrapper.close"),
        ],
    ),
    (
        "answer: build and render JSON",
        [
            ("rest_framework.views", "APIView.finalize_response"),
            ("remediation.api.views", "verdict_json"),
        ],
    ),
]


class StageClock:
    """CPU seconds per stage, each exclusive of the stages nested in it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[list[Any]] = []  # [stage, started, nested seconds]
        self.on = False

    def wrap(self, stage: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return function(*args, **kwargs)
            self.stack.append([stage, time.thread_time(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                _, started, nested = self.stack.pop()
                spent = time.thread_time() - started
                self.seconds[stage] += spent - nested
                self.calls[stage] += 1
                if self.stack:
                    self.stack[-1][2] += spent

        return timed


clock = StageClock()
_gc_started: list[float] = []


def _time_gc(phase: str, info: dict) -> None:
    """Garbage collection, wherever it strikes, as a stage of its own."""
    if not clock.on:
        return
    if phase == "start":
        _gc_started.append(time.thread_time())
    elif _gc_started:
        spent = time.thread_time() - _gc_started.pop()
        clock.seconds["garbage collection"] += spent
        clock.calls["garbage collection"] += 1
        if clock.stack:
            clock.stack[-1][2] += spent


def post_worker_init(worker) -> None:
    gc.callbacks.append(_time_gc)
    for stage, places in STAGES:
        for module_name, path in places:
            try:
                owner: Any = importlib.import_module(module_name)
            except ImportError:
                continue
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, clock.wrap(stage, getattr(owner, name)))
    from config.warm import warm_up  # Django is set up by now

    # This file replaces config/gunicorn.py on the command line. That one warms up once, in
    # the arbiter, before forking (preload_app); here each worker does it, after wrapping
    # its stages: the per-request figures are the same either way.
    warm_up()


def pre_request(worker, req) -> None:
    if not clock.on and os.path.exists(os.path.join(os.environ["BENCH_PROFILE_DIR"], "on")):
        clock.on = True


def worker_exit(server, worker) -> None:
    path = os.path.join(os.environ["BENCH_PROFILE_DIR"], f"stage-{os.getpid()}.json")
    with open(path, "w") as file:
        json.dump({"seconds": clock.seconds, "calls": clock.calls}, file)
