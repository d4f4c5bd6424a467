# Every target installs what it needs first; `make demo` and `make test` work on a fresh clone
# with nothing but Python >= 3.11 and make. Everything installed comes from uv.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
# The locker, bootstrapped into .venv with pip; the dev group in pyproject.toml pins the same
# version so that `uv sync` keeps it (tests/test_packaging.py checks the two agree).
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock 2>/dev/null | cksum | cut -d' ' -f1)
# uv uses the interpreter the venv was made with and never downloads one of its own.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Install compiled: where Python writes no bytecode (PYTHONDONTWRITEBYTECODE, as in many CI
# images) every test's subprocess (the CLI, the bench, the journal's crash children) would
# compile aiohttp and the rest from source again; compiling once at install costs less.
export UV_COMPILE_BYTECODE := 1
# Material for MkDocs prints a banner about its successor on every build; `make docs` stays quiet.
export NO_MKDOCS_2_WARNING := 1

PYTEST_ENV := PYTHONASYNCIODEBUG=1
PYTEST_ARGS := -X dev -W error::ResourceWarning -m pytest -q

.PHONY: install demo demo-solara test test-uvloop lint format soak bench docs screenshots lock test-lowest test-latest clean

install: $(STAMP)

$(UV):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --locked: install exactly what uv.lock says, and fail if pyproject.toml has moved on from it.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras --quiet
	@rm -f $(VENV)/.installed-*
	@touch $@

## Start the reference server on a free port with a fresh key, run the quickstart, stop.
demo: install
	$(BIN)/python examples/demo.py

## The Solara chat (examples/solara_chat.py) against the reference server, in the browser:
## Solara's front end is served from its local cache (filled once from the npm registry).
demo-solara: install
	$(BIN)/python examples/solara_assets.py
	$(BIN)/python examples/demo.py --solara

## Every test, with asyncio debug mode and ResourceWarning as an error; then lint and types.
test: install
	$(PYTEST_ENV) $(BIN)/python $(PYTEST_ARGS)
	$(MAKE) --no-print-directory lint

## Every test on uvloop's event loop (the uvloop extra), then lint and types.
test-uvloop: install
	NEXUS_TEST_LOOP=uvloop $(PYTEST_ENV) $(BIN)/python $(PYTEST_ARGS)
	$(MAKE) --no-print-directory lint

## Refresh uv.lock to the newest versions the ranges in pyproject.toml allow; review its diff.
lock: $(UV)
	$(UV) lock --upgrade

# Every extra in pyproject.toml (tests/test_packaging.py checks): test-lowest and test-latest
# install them all.
EXTRAS := tui,notebook,qt,uvloop,socks,testing,solara,encryption,otel

## The suite on the lowest versions pyproject.toml's ranges allow, in .venv-lowest (not locked).
## tools/floors.py first fails unless each dependency and extra is installed at its declared
## floor. A fresh venv, so that nothing left from an earlier run stands in for a floor. The
## bench group stays out: its picows needs python-socks 3 and the socks extra's floor
## (aiohttp-socks 0.9) python-socks 2, so the quick bench's test skips here.
test-lowest: $(UV)
	$(UV) venv --quiet --clear --python $(BIN)/python .venv-lowest
	$(UV) pip install --quiet --python .venv-lowest/bin/python --resolution lowest-direct \
		-e '.[$(EXTRAS)]' --group test --group docs --group lint uv==$(UV_VERSION)
	.venv-lowest/bin/python tools/floors.py
	$(PYTEST_ENV) .venv-lowest/bin/python $(PYTEST_ARGS)

## The suite on the newest versions released today, in .venv-latest (not locked).
test-latest: $(UV)
	$(UV) venv --quiet --allow-existing --python $(BIN)/python .venv-latest
	$(UV) pip install --quiet --python .venv-latest/bin/python --refresh --upgrade \
		-e '.[$(EXTRAS)]' --group dev
	.venv-latest/bin/python tools/floors.py --report
	$(PYTEST_ENV) .venv-latest/bin/python $(PYTEST_ARGS)

## The long soak: many reconnect cycles under a steady stream of asks.
soak: install
	NEXUS_SOAK=long $(PYTEST_ENV) $(BIN)/python $(PYTEST_ARGS) -m soak

## The benchmark suite: library vs baselines, interleaved rounds; table, bench/results/{latest.json,ratios.png}.
bench: install
	$(BIN)/python -m bench.run

## Build the documentation site (MkDocs + mkdocstrings) into site/; warnings are errors.
docs: install
	$(BIN)/python -m mkdocs build --strict

## Remake docs/images/ (the Textual chat, the Tk and Qt examples, the notebook's live view)
## and examples/notebook.ipynb's outputs, against the reference server. Needs, from Debian:
## xvfb imagemagick chromium (and Qt's X libraries, see .ci/run).
screenshots: install
	$(BIN)/python docs/screenshots/make.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-lowest .venv-latest .pytest_cache .mypy_cache .ruff_cache
