# Task runner for schedd. Every target runs a command documented in README.md, CONTRIBUTING.md,
# chaos/README.md or bench/README.md; `make help` lists them. Needs only make and Python.

PYTHON ?= python3

.DEFAULT_GOAL := help
.PHONY: help install lint test test-fast chaos-smoke chaos bench protos

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## editable install with the test tools: pip install -e '.[test]'
	$(PYTHON) -m pip install -e '.[test]'

lint: ## ruff check + ruff format --check + mypy (runs all three, fails if any fails)
	@status=0; \
	$(PYTHON) -m ruff check . || status=1; \
	$(PYTHON) -m ruff format --check . || status=1; \
	$(PYTHON) -m mypy || status=1; \
	exit $$status

test: ## the README's test command, what CI runs: install, then the whole suite
	$(PYTHON) -m pip install -e '.[test]' && $(PYTHON) -m pytest

test-fast: ## unit tests only, in-process (no cluster, no subprocess)
	$(PYTHON) -m pytest tests/unit

chaos-smoke: ## the chaos smoke set, checker and power-loss model tests (about 6 min)
	$(PYTHON) -m pytest tests/chaos

chaos: ## every chaos scenario, 30 s of faults each, then a summary table (chaos/README.md)
	$(PYTHON) -m chaos all --duration 30

bench: ## benchmark against raw pysyncobj and APScheduler, 3 runs (needs pip install -e '.[bench]')
	$(PYTHON) bench/run.py --runs 3

protos: ## regenerate the protobuf/gRPC modules from proto/ (scripts/gen_protos.py)
	@if [ -f scripts/gen_protos.py ]; then \
		$(PYTHON) scripts/gen_protos.py; \
	else \
		echo "make protos: scripts/gen_protos.py does not exist yet (it is being written)."; \
		echo "Until it lands, a source checkout generates the modules on first import (schedd/_protogen.py)."; \
	fi
