# facegan: the two commands a user needs are `make demo` and `make test`.
# Everything installs from the committed lock file (requirements.lock) with uv; nothing floats.
SHELL := /bin/bash
VENV := .venv
TOOLS := .tools
UV_VERSION := 0.13.9
PY := $(VENV)/bin/python
STAMP := $(VENV)/.facegan-installed
DATA ?=
OUT ?= demo_out
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: install demo test test-unit test-e2e lock bench clean

# Python 3.10 on PATH, else any 3.10.x that pyenv has; else a clear message (see the uv rule).
PYTHON310 := $(shell scripts/find_python310.sh)

$(TOOLS)/bin/uv:
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "error: Python 3.10 is required (TFX 1.15 / TF 2.15 support nothing newer here)."; \
	  echo "       Install it, e.g. 'pyenv install 3.10.13' or 'apt-get install python3.10 python3.10-venv',"; \
	  echo "       or put a python3.10 on PATH, then re-run make."; exit 1; fi
	$(PYTHON310) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

$(STAMP): requirements.lock setup.py $(TOOLS)/bin/uv
	@echo "== installing the locked environment into $(VENV) (Python: $(PYTHON310))"
	@[ -x $(PY) ] || $(TOOLS)/bin/uv venv -q --python $(PYTHON310) $(VENV)
	$(TOOLS)/bin/uv pip sync -q --python $(PY) requirements.lock
	$(TOOLS)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# Runs the whole pipeline on the embedded default data (or DATA=/path/to/faces).
demo: $(STAMP)
	$(VENV)/bin/facegan demo --out $(OUT) $(if $(DATA),--data $(DATA),)

# Unit tests (no TFX import; enforced by tests/conftest.py) then end-to-end tests.
# The unit tests run on TEST_WORKERS processes (pytest-xdist); `--dist loadfile` keeps each file on
# one worker, so a file's module-level caches (e.g. test_train_loop.py's shared preset runs) hold.
# The end-to-end tests stay in one process (servers, TFX pipelines, Beam).
UNIT := -m "not e2e" -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PY) -m pytest $(UNIT) $(PYTEST_ARGS)
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest $(UNIT) $(PYTEST_ARGS)

test-e2e: $(STAMP)
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

# Re-resolve the lock (only when requirements.in changes).
lock: $(TOOLS)/bin/uv
	$(TOOLS)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_36 -o requirements.lock

# The speed benchmarks (JSON on stdout, with the CPU model and its bf16/AMX flags). The quality
# studies (bench/quality.py, bench/i2i_quality.py) train for hours: run them by hand.
BENCHMARKS := ingest train metrics serving
bench: $(STAMP)
	set -e; for b in $(BENCHMARKS); do $(PY) bench/$$b.py; done

clean:
	rm -rf $(VENV) $(TOOLS) $(OUT) .pytest_cache
