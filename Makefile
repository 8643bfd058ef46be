# The two commands of the README: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/python manage.py run_demo

# pytest-xdist: one worker per CPU (at most 2, the arrangement measured: each builds its own
# test database, and the real servers of one worker share the CPUs with the other); the
# tests starting real servers stay on one worker (tests/integration/conftest.py). Each
# worker keeps pytest-django's order (database tests that roll back, then those that empty
# the database): xdist would otherwise send the largest group, those servers' tests, first.
# PYTEST_XDIST="-n 0" runs everything in one process.
PYTEST_XDIST ?= -n logical --maxprocesses 2 --dist loadgroup --no-loadscope-reorder

test: $(VENV)/.dev lint
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

# The in-process ones first, then through real servers (PostgreSQL, Redis and nginx
# from Debian's packages, as .ci/run installs them): about 30 minutes in all.
bench: $(VENV)/.dev
	$(BIN)/python bench/bench_classification.py
	$(BIN)/python bench/bench_decision.py
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_long_poll.py
	$(BIN)/python bench/bench_classification_placement.py
	$(BIN)/python bench/fleet_simulation.py
	$(BIN)/python bench/bench_audit_export.py
	$(BIN)/python bench/bench_console_latency.py

clean:
	rm -rf $(VENV) data
