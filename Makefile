# Two entry points: `make run` (the default study) and `make test`. Everything installs into .venv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

# torch first: the pin takes the local CPU wheel, so nothing later resolves a CUDA build.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: setup
	$(BIN)/expertlab run

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/observe_overhead.py
	$(BIN)/python benchmarks/observe_memory.py

clean:
	rm -rf $(VENV)
