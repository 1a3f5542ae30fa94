# xaibias: two commands do all set-up.
#   make notebooks  - create .venv if missing, install everything, execute every notebook into build/
#   make test       - create .venv if missing, install everything, run pytest and the notebook tests
# FAST mode (small data, few epochs) is on without a CUDA GPU or when CI is set; XAIBIAS_FAST=0/1 wins.
# Under CI every make run trains from an empty model cache of its own, as a new user's machine does.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are what this project is tested with (and what lies on the
# build machine's disk). Override for another platform, e.g. make TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.xaibias-installed
NB_TIMEOUT ?= 600

ifneq ($(strip $(CI)),)
ifeq ($(strip $(XAIBIAS_CACHE)),)
export XAIBIAS_CACHE := $(shell mktemp -d -t xaibias-ci-cache.XXXXXX)
endif
endif

.PHONY: all install notebooks test test-unit test-notebooks lint lab bench badges student clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test,lab]"
	@touch $(STAMP)

install: $(STAMP)

notebooks: $(STAMP)
	XAIBIAS_HEADLESS=1 $(BIN)/python tools/run_notebooks.py --out build --timeout $(NB_TIMEOUT)

test: test-unit test-notebooks

test-unit: $(STAMP)
	@if [ -n "$$CI" ]; then echo "CI: model cache $$XAIBIAS_CACHE (empty at the start of this run)"; fi
	$(BIN)/python -m pytest tests -q

test-notebooks: $(STAMP)
	XAIBIAS_FAST=$${XAIBIAS_FAST:-1} XAIBIAS_HEADLESS=1 $(BIN)/python -m pytest -q -p no:cacheprovider \
		--nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=$(NB_TIMEOUT) notebooks

lint: $(STAMP)
	$(BIN)/ruff check xaibias tests tools benchmarks

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f --json build/bench/$$(basename $$f .py).json || exit 1; done

badges: $(STAMP)
	$(BIN)/python tools/badges.py

# student versions of the notebooks: solutions replaced by stubs, no outputs (build/student/)
student: $(STAMP)
	$(BIN)/python tools/make_student.py --out build/student

clean:
	rm -rf build .pytest_cache
