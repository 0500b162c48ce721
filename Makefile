# Two commands do all the set-up (each creates .venv on first use):
#   make run    the main job: every suite at the smoke profile, one method per family, on the embedded data, offline
#   make test   the harness's own tests
VENV ?= .venv
PY := $(VENV)/bin/python
METHOD ?= ensloss,erm,mls,salun,simclr,frozen
PROFILE ?= smoke
RESULTS ?= out/results
PYTEST_ARGS ?=

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

.PHONY: run test test-fast lint leaderboard bench
run: $(VENV)/.installed
	$(PY) -m pytest suites/ --method=$(METHOD) --profile=$(PROFILE) --results-dir=$(RESULTS) -rs $(PYTEST_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# the fast lane: everything but the suite runs in child processes (marked slow); CI runs `make test`
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/lint-imports

leaderboard: $(VENV)/.installed
	$(PY) -m harness leaderboard

bench: $(VENV)/.installed
	$(PY) -m pytest benchmarks/ $(PYTEST_ARGS)
