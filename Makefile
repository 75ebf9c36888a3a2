# Report Platform: `make run` sets up and starts everything; `make test` sets up and runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# Resolved when a recipe runs (after `uv` may have installed it): on PATH, in ~/.local/bin, or
# as the module pip installed.
UV = $(shell command -v uv 2>/dev/null || { [ -x $(HOME)/.local/bin/uv ] && echo $(HOME)/.local/bin/uv; } || echo "$(PYTHON) -m uv")
export UV
DATA_HOME := $(or $(REPORT_PLATFORM_HOME),$(CURDIR)/data)
# Only the demo and `make run` use the project's data folder and Dagster instance; the tests make
# their own in temporary folders.
RUN_ENV := REPORT_PLATFORM_HOME=$(DATA_HOME) DAGSTER_HOME=$(or $(DAGSTER_HOME),$(DATA_HOME)/dagster_home)
DEMO_DAYS ?= 35
DEMO_ROWS ?= 2000
PYTEST_ARGS ?=

.PHONY: help uv install system-deps lint format test run demo bench clean

help:
	@echo "make run    - install, make demo data, ingest it, start Dagster on http://127.0.0.1:3000"
	@echo "make test   - install and run the whole test suite"
	@echo "make bench  - run the benchmarks (slow; figures go to BENCHMARKS.md)"

uv:
	@if ! $(UV) --version >/dev/null 2>&1; then \
		echo "installing uv"; \
		$(PYTHON) -m pip install --quiet --user uv 2>/dev/null || $(PYTHON) -m pip install --quiet uv; \
	fi

# Bytecode is compiled at install: every Dagster run is a fresh process, and one that finds no
# `.pyc` (PYTHONDONTWRITEBYTECODE is common in containers) compiles Dagster from source each time.
install: uv
	@$(UV) sync --frozen --all-groups --quiet --compile-bytecode

# System packages the tests and the demo use: OpenSSH's sshd (SFTP peer), PostgreSQL (registry),
# Chromium (browser tests). Installed with apt-get when running as root, otherwise named.
system-deps:
	@bash scripts/system-deps.sh

lint: install
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen lint-imports --no-cache

format: install
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

test: system-deps install lint
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

demo: install
	@$(RUN_ENV) bash scripts/demo-setup.sh

run: system-deps install demo
	@$(RUN_ENV) bash scripts/run.sh

bench: system-deps install
	@$(UV) run --frozen python benchmarks/run_all.py

clean:
	rm -rf .venv data .pytest_cache .ruff_cache
