# Two commands for a new user: `make testnet` and `make test`. `make check` is the
# inner loop (lint and the unit layer); `make test` runs every layer: unit, sim, process.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: check test testnet sim bench lint clean console-deps chromium screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,analytics]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

check: $(STAMP) lint
	$(BIN)/pytest -m unit

# Two workers, one test file each at a time (module-scoped testnets stay in one worker):
# most of the suite waits on real node processes, so two workers on two cores halve the
# wall time (5.5 minutes instead of 10 on this machine).
test: $(STAMP) lint console-deps
	$(BIN)/pytest -n 2 --dist loadfile

sim: $(STAMP)
	SIM_SEEDS=$${SIM_SEEDS:-100000} SIM_DURATION_MS=$${SIM_DURATION_MS:-2000} HOSTILE_SEEDS=$${HOSTILE_SEEDS:-5000} $(BIN)/pytest -m sim -x

# The end-to-end figure of the README: a fresh three-state testnet, single-code documents.
bench: $(STAMP)
	$(BIN)/python -m bench.tamga_bench --fresh --kind single --clients 48 --batch 10

testnet: $(STAMP)
	$(BIN)/python -m testnet.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The console's chart library, Chart.js from the npm registry, copied into a git-ignored
# folder that the console serves itself (nothing is loaded from the internet at run
# time); without npm the console shows its figures as tables. The browser tests drive
# Debian's Chromium with playwright (a test dependency from PyPI; its own browser
# downloads are never used).
CHARTJS_VERSION := 4.5.1
CHART_VENDOR := cli/console/static/vendor/chart.umd.js

console-deps: $(CHART_VENDOR) chromium

$(CHART_VENDOR):
	@if command -v npm >/dev/null; then \
	  { npm install --prefix build/npm --no-audit --no-fund --silent chart.js@$(CHARTJS_VERSION) && \
	    mkdir -p $(dir $(CHART_VENDOR)) && cp build/npm/node_modules/chart.js/dist/chart.umd.js $@; } || \
	  echo "could not install Chart.js from the npm registry: the console shows tables without charts"; \
	else echo "npm not found: the console shows tables without charts (apt-get install npm, then make console-deps)"; fi

chromium:
	@if command -v chromium >/dev/null || [ -x "$${TAMGA_CHROMIUM:-/nonexistent}" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "apt-get could not install chromium: the browser tests will be skipped"; \
	else echo "Chromium is not installed, so the browser tests will be skipped: run 'sudo apt-get install chromium'" \
	  "(Debian, Ubuntu) or set TAMGA_CHROMIUM to a Chromium binary"; fi

# Screenshots of every console view into docs/console/ (a fresh testnet, a headless Chromium).
screenshots: $(STAMP) console-deps
	$(BIN)/python -m cli.console.screenshots
