# Two entry points for a fresh clone: `make repro` (environment + default pipeline) and
# `make test` (environment + test suite). The environment is rebuilt when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: env test test-fast repro bench clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# data/ holds the user's raw datasets (data.dvc). A fresh clone has none: re-adding the empty folder
# reproduces the committed data.dvc exactly, so the pipeline runs offline and `dvc status` stays clean.
# params.yaml is validated before DVC runs: DVC deletes a stage's outputs before its command starts,
# so an invalid config must stop here, not inside the first stage (and a run name is a shell argument).
repro: $(STAMP)
	$(BIN)/python -m marginlab.config params.yaml
	@mkdir -p data
	$(BIN)/dvc add -q data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

bench: $(STAMP)
	$(BIN)/python bench/bench_heads.py

clean-env:
	rm -rf $(VENV)
