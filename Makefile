# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

DEMO := lightweight_charts_pro_backend/demo

.PHONY: install demo-assets system-deps run run-production test lint format typecheck check bench clean

install: $(VENV)/.installed demo-assets

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The demo page's chart library from npm, served by the app; without npm the page uses a CDN.
demo-assets: $(DEMO)/node_modules/lightweight-charts/package.json

$(DEMO)/node_modules/lightweight-charts/package.json: $(DEMO)/package.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(DEMO) && npm install --silent --no-audit --no-fund --no-package-lock && touch node_modules/lightweight-charts/package.json; \
	else \
		echo "npm not found: the demo page will load lightweight-charts from a CDN"; \
	fi

system-deps:
	./scripts/system-deps.sh

# The development server with the demo chart seeded (1,000,000 candles) and kept moving.
run: install
	@echo "Serving on http://$(HOST):$(PORT) (API docs at http://$(HOST):$(PORT)/docs)"
	@echo "Demo page: http://$(HOST):$(PORT)/demo?chart=demo (ready once the demo chart is seeded)"
	$(BIN)/charts-backend demo --serve --host $(HOST) --port $(PORT)

run-production: install
	$(BIN)/charts-backend serve --host $(HOST) --port $(PORT)

test: install system-deps
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

bench: install system-deps
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
