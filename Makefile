# Two entry points: `make run` (the default study) and `make test`. Everything installs into .venv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip's own progress, without the warnings some package indexes print for every package
pip_install = $(BIN)/python -m pip install $(1) 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: setup setup-gpu run test bench reliability clean

setup: $(VENV)/.installed

# torch first: the pin takes the local CPU wheel, so nothing later resolves a CUDA build. requirements.lock
# holds every package the environment needs, so pip installs it as it stands (--no-deps), and --no-compile
# leaves the byte-compiling to the first import of each module (most of these packages' files are never imported).
# DeepEval and bfcl-eval without their pins (they conflict with requirements.lock, and what expertlab imports of
# them needs none of them): requirements-deepeval.lock and requirements-bfcl.lock say why and list what they do need.
$(VENV)/.installed: requirements.lock requirements-deepeval.lock requirements-bfcl.lock pyproject.toml
	@echo "setup 1/6: a virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "setup 2/6: torch 2.13.0, the CPU build"
	$(call pip_install,--no-compile torch==2.13.0)
	@echo "setup 3/6: the pinned versions of requirements.lock"
	$(call pip_install,--no-deps --no-compile -r requirements.lock)
	@echo "setup 4/6: deepeval 4.3.1 and what its hallucination metric imports, without deepeval's pins"
	$(call pip_install,--no-deps -r requirements-deepeval.lock)
	@echo "setup 5/6: bfcl-eval 2026.3.23 (BFCL's data and checker) and what expertlab imports of it, without its pins"
	$(call pip_install,--no-deps -r requirements-bfcl.lock)
	@echo "setup 6/6: expertlab itself, editable"
	$(call pip_install,--no-deps -e .)
	@touch $@
	@echo "setup: done"

# A GPU machine (Linux x86_64, Python 3.11): vLLM and the CUDA torch it pins, from requirements-gpu.lock
# (scripts/lock_gpu.py writes it); never part of CI or `make test`.
setup-gpu:
	$(PYTHON) -m venv $(VENV)
	$(call pip_install,-r requirements-gpu.lock)
	$(call pip_install,--no-deps -r requirements-bfcl.lock)
	$(call pip_install,--no-deps -e .)

run: setup
	$(BIN)/expertlab run

# two workers (the machine's two cores); a module's tests stay on one worker, so its fixtures are built once;
# files are handed out in collection order (tests/conftest.py puts the end-to-end studies first)
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

bench: setup
	$(BIN)/python benchmarks/observe_overhead.py
	$(BIN)/python benchmarks/observe_overhead.py --shape real
	$(BIN)/python benchmarks/orchestration.py
	$(BIN)/python benchmarks/observe_memory.py
	$(BIN)/python benchmarks/packed_size.py
	$(BIN)/python benchmarks/warm_start.py

# bad inputs, params mutations, kill -9s, concurrent ingests and judges, judge faults: counted (README, Reliability)
reliability: setup
	$(BIN)/python benchmarks/reliability.py

clean:
	rm -rf $(VENV)
