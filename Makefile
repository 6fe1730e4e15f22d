# Two entry points on a fresh machine: `make run` (service on SQLite) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The compress environment: tf-keras and TFMOT for the measured pruning/clustering
# (profilers/compression.py runs its legacy-Keras part with this interpreter; another one
# can be named by PHYMEM_COMPRESS_PYTHON). Its own venv, because tf-keras pulls the full
# `tensorflow` wheel, which would replace `tensorflow-cpu` in .venv.
CVENV := .venv-compress
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck pytest bench clean compress-env

$(BIN)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[worker]'
	touch $@

$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(BIN)/.installed-run

$(CVENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CVENV)
	$(CVENV)/bin/pip install -q --upgrade pip
	$(CVENV)/bin/pip install -q -e '.[compress]'
	touch $@

compress-env: $(CVENV)/.installed

run: $(BIN)/.installed-run
	$(BIN)/phymem db upgrade
	$(BIN)/phymem serve --host $(HOST) --port $(PORT) --with-worker

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed-dev
	$(BIN)/mypy app profilers estimator migrations

pytest: $(BIN)/.installed-dev $(CVENV)/.installed
	$(BIN)/python -m pytest -q -ra

test: lint typecheck pytest

bench: $(BIN)/.installed-dev
	$(BIN)/python benchmarks/cli_bench.py

clean:
	rm -rf $(VENV) $(CVENV) data .pytest_cache .mypy_cache .ruff_cache
