# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv in the repo root if it is missing and install everything.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.probpipe-installed
DEPS   := pyproject.toml plugins/probpipe-ray/pyproject.toml constraints.txt

.PHONY: demo test fuzz lint format docs bench setup clean

setup: $(STAMP)

$(STAMP): $(DEPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]" -e plugins/probpipe-ray
	@touch $(STAMP)

demo: setup
	$(BIN)/probpipe demo

test: setup
	$(BIN)/python -m ruff check src plugins tests benchmarks examples
	$(BIN)/python -m ruff format --check src plugins tests benchmarks examples
	$(BIN)/python -m pytest

# Property-based fuzzing of the public surface, long profile: thousands of
# fresh random inputs per property (make test runs a short, fixed profile).
fuzz: setup
	PROBPIPE_FUZZ_PROFILE=long $(BIN)/python -m pytest tests/test_fuzz.py -q

lint: setup
	$(BIN)/python -m ruff check src plugins tests benchmarks examples

format: setup
	$(BIN)/python -m ruff format src plugins tests benchmarks examples
	$(BIN)/python -m ruff check --fix src plugins tests benchmarks examples

docs: setup
	$(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/probpipe bench

clean:
	rm -rf $(VENV) site build .pytest_cache
