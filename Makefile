# xaibias: two commands do all set-up.
#   make notebooks  - create .venv if missing, install everything, execute every notebook into build/
#   make test       - create .venv if missing, install everything, run pytest and the notebook tests
# FAST mode (small data, few epochs) is on when CI is set or XAIBIAS_FAST=1.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are what this project is tested with (and what lies on the
# build machine's disk). Override for another platform, e.g. make TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.xaibias-installed
NB_TIMEOUT ?= 600

.PHONY: all install notebooks test test-unit test-notebooks lint lab bench badges clean

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

clean:
	rm -rf build .pytest_cache
