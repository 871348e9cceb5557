# Tocsin - one gate: `make check` is exactly what CI runs (lint, types, tests).
PYTHON ?= python3
DATA ?= ./data

.PHONY: install run check lint typecheck test test-fast bench demo scorecard clean

install:
	$(PYTHON) -m pip install -q -e '.[coordinator,traceroute,dev]'

run:  ## the main job: coordinator + one local probe + the default campaign
	$(PYTHON) -m coordinator quickstart --data $(DATA)

check: lint typecheck test

lint:
	$(PYTHON) -m ruff check probe coordinator lab tests bench

typecheck:
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest -q -ra

test-fast:
	$(PYTHON) -m pytest -q -ra -m "not scenario and not browser"

bench:
	@for b in bench/bench_*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

demo:
	$(PYTHON) -m lab run kazakhstan-2022 --live

scorecard:
	$(PYTHON) -m lab scorecard

clean:
	$(PYTHON) -m lab down || true
	rm -rf .pytest_cache .mypy_cache .ruff_cache
