# Tocsin - one gate: `make check` is exactly what CI runs (lint, types, tests).
PYTHON ?= python3
DATA ?= ./data

.PHONY: deps run check lint typecheck test test-fast bench demo scorecard clean

# Installs the apt and pip packages once (scripts/install-deps.sh); re-run with `make deps`.
.deps-stamp: pyproject.toml scripts/install-deps.sh
	bash scripts/install-deps.sh
	touch $@

deps:
	bash scripts/install-deps.sh
	touch .deps-stamp

run: .deps-stamp  ## the main job: coordinator + one local probe + the default campaign
	$(PYTHON) -m coordinator quickstart --data $(DATA)

check: .deps-stamp
	@if [ "$$(id -u)" = 0 ]; then bash lab/host-guard.sh; else echo "not root: network-namespace tests will fail (CI runs as root)"; fi
	$(MAKE) lint typecheck test

lint:
	$(PYTHON) -m ruff check probe coordinator lab tests bench

typecheck:
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest -q -ra

test-fast:
	$(PYTHON) -m pytest -q -ra -m "not scenario and not browser"

bench: .deps-stamp
	@for b in bench/bench_*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

demo: .deps-stamp
	$(PYTHON) -m lab run kazakhstan-2022 --live

scorecard: .deps-stamp
	$(PYTHON) -m lab scorecard

clean:
	$(PYTHON) -m lab down || true
	rm -rf .pytest_cache .mypy_cache .ruff_cache
