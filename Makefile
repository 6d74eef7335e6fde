# Two entry points for a fresh clone: `make repro` (environment + default pipeline) and
# `make test` (environment + test suite). The environment is rebuilt when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Two workers, whole files per worker: module fixtures (the smoke pipeline, the bad-input workspace)
# are built once, and the two slow files run side by side.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: env browser lint test test-fast repro bench clean-env

# Python caches each module's byte code (__pycache__/*.pyc) the first time it imports it; `make env` installs
# with --no-compile (below), so that first import is where it happens. An environment that sets
# PYTHONDONTWRITEBYTECODE (the machines this project is built and tested on do) stops the caching, and then
# every stage and test process compiles torch, pandas, scikit-learn, ... from source again: an evaluation
# stage took 15.5 s instead of 8.5 s, about 7 s more for each of the default pipeline's 38 stages
# (bench/RESULTS.md).
# The .pyc files land in .venv and in ignored __pycache__ folders (.gitignore, .dvcignore).
unexport PYTHONDONTWRITEBYTECODE

env: $(STAMP)

# --no-compile: pip byte-compiles every installed module (torch alone has thousands) before the first test
# can run; Python compiles the ones actually imported on first use instead (measured: torch + torchvision +
# pyiqa installed in 132 s instead of 366 s, bench/RESULTS.md).
# The environment takes ~7.2 GB (torch's CUDA wheels: nvidia/ 3.2 GB, torch 1.2 GB, triton 0.9 GB) plus pip's
# unpacking space; a full disk otherwise fails deep inside pip with "[Errno 28] No space left on device".
NEED_FREE_GB ?= 9
$(STAMP): pyproject.toml
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	  if [ -n "$$free_kb" ] && [ "$$free_kb" -lt $$(( $(NEED_FREE_GB) * 1024 * 1024 )) ] && [ ! -f $(STAMP) ]; then \
	    echo "make env: $(CURDIR) has $$(( free_kb / 1024 / 1024 )) GB free; the environment needs about $(NEED_FREE_GB) GB (torch's CUDA wheels). Free some space (or set NEED_FREE_GB) and rerun." >&2; \
	    df -h . >&2; exit 1; fi
	@if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	# facenet-pytorch (MTCNN, data.align: detect) without its dependencies: its metadata pins torch<2.3,
	# numpy<2, Pillow<10.3, which would downgrade the stack above; its MTCNN runs on our pins (pyproject
	# [tool.marginlab] no-deps-dependencies, tests/test_environment.py keeps the pins in step).
	$(BIN)/python -m pip install --quiet --no-compile --no-deps facenet-pytorch==2.6.0
	@touch $(STAMP)

# The report's browser test needs Chromium: installed from Debian's packages where we are root (CI),
# otherwise a note (the test then skips locally, and fails on CI where a skip would hide it).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install chromium (apt-get install chromium) for the report's browser test"; fi

# ruff's bug-catching rules on every Python file; ruff format and mypy on the modules [tool.mypy] lists
# (pyproject.toml: the command, config and preset layer first). .pre-commit-config.yaml runs the same.
TYPED = $(shell $(BIN)/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['tool']['mypy']['files']))" 2>/dev/null)
lint: $(STAMP)
	$(BIN)/ruff check src tests bench stages workflow
	$(BIN)/ruff format --check $(TYPED)
	$(BIN)/mypy

test: $(STAMP) browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# data/ holds the user's raw datasets (data.dvc). A fresh clone has none: re-adding the empty folder
# reproduces the committed data.dvc exactly, so the pipeline runs offline and `dvc status` stays clean.
# params.yaml is validated before DVC runs: DVC deletes a stage's outputs before its command starts,
# so an invalid config must stop here, not inside the first stage (and a run name is a shell argument).
repro: $(STAMP)
	$(BIN)/python -m marginlab.core.config params.yaml
	@mkdir -p data
	$(BIN)/dvc add -q data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

bench: $(STAMP)
	$(BIN)/python bench/bench_heads.py

clean-env:
	rm -rf $(VENV)
