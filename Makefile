# The two commands of the README: `make run` and `make test`.
# Both create .venv from the locked requirements on first use.
# `make test-quick` is the short loop while changing code (SQLite, no real servers).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Parallel test workers (pytest-xdist). Many tests wait on the database, so one more
# worker than cores keeps both busy; see the README's "Two commands".
TEST_WORKERS ?= 3
# Tests go out a few at a time, in order: the real-server tests, which come first
# (tests/conftest.py), are then shared by all workers instead of making up the first
# worker's opening batch.
XDIST := -n $(TEST_WORKERS) --maxschedchunk=4

.PHONY: install run test test-quick coverage lint typecheck check lock clean

$(STAMP): requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Serve the API on http://127.0.0.1:8000 (SQLite in ./data, local-mode auth).
run: $(STAMP)
	$(BIN)/izin-siaran migrate
	exec $(BIN)/izin-siaran serve

## The whole test suite, on SQLite and on PostgreSQL (127.0.0.1:5432), in parallel workers.
test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST)

## The whole suite with line and branch coverage of app/ (slower: the tracer costs every line).
coverage: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) --cov=app --cov-report=term:skip-covered

## The quick loop: every test but the real-server ones (`slow`), on SQLite only.
test-quick: $(STAMP)
	TEST_DATABASES=sqlite $(BIN)/python -m pytest $(XDIST) -m "not slow" -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## Re-resolve the locked requirements after editing pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements/main.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements/dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
