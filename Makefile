# Two commands for a new user: `make testnet` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test testnet sim bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/pytest

sim: $(STAMP)
	SIM_SEEDS=$${SIM_SEEDS:-100000} $(BIN)/pytest tests/consensus -k "random or fuzz" -x

testnet: $(STAMP)
	$(BIN)/python -m testnet.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
