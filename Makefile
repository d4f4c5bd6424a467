# Every target installs what it needs first; `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test lint format soak bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## Start the reference server on a free port with a fresh key, run the quickstart, stop.
demo: install
	$(BIN)/python examples/demo.py

## Every test, with asyncio debug mode and ResourceWarning as an error; then lint and types.
test: install
	PYTHONASYNCIODEBUG=1 $(BIN)/python -X dev -W error::ResourceWarning -m pytest -q
	$(MAKE) --no-print-directory lint

## The long soak: many reconnect cycles under a steady stream of asks.
soak: install
	NEXUS_SOAK=long PYTHONASYNCIODEBUG=1 $(BIN)/python -X dev -W error::ResourceWarning -m pytest -q -m soak

## The benchmark suite: library vs baselines, interleaved rounds; table, bench/results/{latest.json,ratios.png}.
bench: install
	$(BIN)/python -m bench.run

## Build the documentation site (MkDocs + mkdocstrings) into site/; warnings are errors.
docs: install
	$(BIN)/python -m mkdocs build --strict

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
