# Two commands for a new user: `make testnet` and `make test`. `make check` is the
# inner loop (lint and the unit layer); `make test` runs every layer: unit, sim, process.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: check test testnet sim bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

check: $(STAMP) lint
	$(BIN)/pytest -m unit

test: $(STAMP) lint
	$(BIN)/pytest

sim: $(STAMP)
	SIM_SEEDS=$${SIM_SEEDS:-100000} SIM_DURATION_MS=$${SIM_DURATION_MS:-2000} HOSTILE_SEEDS=$${HOSTILE_SEEDS:-5000} $(BIN)/pytest -m sim -x

# The end-to-end figure of the README: a fresh three-state testnet, single-code documents.
bench: $(STAMP)
	$(BIN)/python -m bench.tamga_bench --fresh --kind single --clients 48 --batch 10

testnet: $(STAMP)
	$(BIN)/python -m testnet.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
