# Quickstart: `make train` (set up, then train the default experiment), `make test` (all tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: setup train test test-fast lint bench clean

# Create the virtual environment and install robustai (editable) with its dev tools.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

# The default experiment: digits, small CNN, FGSM-RS at eps=0.1. Extra overrides: make train ARGS="..."
train: $(STAMP)
	$(VENV)/bin/robustai train $(ARGS)

# One pytest-xdist worker per core; worksteal evens out the few long tests (tests/conftest.py
# gives each worker its share of torch threads). A plain `pytest` runs serially, e.g. to debug.
XDIST := -n auto --dist worksteal

# The whole suite also lists its 15 slowest tests: the suite should stay well under 15 minutes.
test: $(STAMP)
	$(PY) -m pytest $(XDIST) --durations=15

# Everything except tests marked slow (> ~10 s each).
test-fast: $(STAMP)
	$(PY) -m pytest $(XDIST) -m "not slow"

# The side-by-side benchmark (README, Performance); options: make bench ARGS="--repeats 3"
bench: $(STAMP)
	$(PY) scripts/bench.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
