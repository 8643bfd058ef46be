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

# pytest-xdist: three workers, measured best on a 2-core machine (tests that wait on a
# browser, a subprocess or a server leave a core idle that a third worker fills), each with
# its own test database and pytest-django's order (tests that roll back, then those that
# empty the database: loadgroup keeps it on each worker, worksteal would not). The
# integration tests, which start real servers (gunicorn, uvicorn, qcluster, nginx, an
# agent), run afterwards on three workers of their own, each with its own database and
# Redis database (tests/integration/conftest.py): beside the others their timings were not
# their own, and much of their time is spent waiting on the servers (a third worker fills
# that: 78-92 s against 84-115 s with two, measured alternately).
# PYTEST_XDIST="-n 0" PYTEST_INTEGRATION_XDIST="-n 0" run each in one process. Exit 5 is
# "none selected".
PYTEST_XDIST ?= -n 3 --dist loadgroup --no-loadscope-reorder
PYTEST_INTEGRATION_XDIST ?= -n 3 --dist load

# On PostgreSQL both runs copy one migrated template database (tests/template_database.py):
# the first keeps it for the second, which drops it. Compiled tests are cached even where
# the environment says PYTHONDONTWRITEBYTECODE: each worker rewrote and compiled every
# test module's asserts again, about 5 s of CPU per process.
test: $(VENV)/.dev lint
	run=make$$$$; export PYTHONDONTWRITEBYTECODE=; \
	  WARDEN_TEST_RUN=$$run WARDEN_TEST_KEEP_TEMPLATE=1 \
	  $(BIN)/python -m pytest $(PYTEST_XDIST) -m "not integration" $(PYTEST_ARGS); \
	  status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status; \
	  WARDEN_TEST_RUN=$$run $(BIN)/python -m pytest $(PYTEST_INTEGRATION_XDIST) -m integration $(or $(PYTEST_ARGS),tests/integration); \
	  status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

# The in-process ones first, then through real servers (PostgreSQL, Redis and nginx
# from Debian's packages, as .ci/run installs them, and wrk): about 45 minutes in all.
bench: $(VENV)/.dev
	$(BIN)/python bench/bench_classification.py
	$(BIN)/python bench/bench_decision.py
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_serving.py --scaling
	$(BIN)/python bench/bench_long_poll.py
	$(BIN)/python bench/bench_classification_placement.py
	$(BIN)/python bench/fleet_simulation.py
	$(BIN)/python bench/bench_audit_export.py
	$(BIN)/python bench/bench_console_latency.py
	$(BIN)/python bench/bench_faults.py
	$(BIN)/python bench/bench_storm.py
	$(BIN)/python bench/bench_months.py

clean:
	rm -rf $(VENV) data
