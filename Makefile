# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

DEMO := lightweight_charts_pro_backend/demo
CLIENT_JS := clients/js

.PHONY: install demo-assets client-js system-deps run run-production test test-js lint format typecheck check bench clean

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

# The browser client: its npm packages (from package-lock.json) and its build in dist/, which
# the Node tests import. `npm run ship` in clients/js copies a build into the Python package.
client-js: $(CLIENT_JS)/dist/charts-client.js

$(CLIENT_JS)/node_modules/.package-lock.json: $(CLIENT_JS)/package.json $(CLIENT_JS)/package-lock.json
	cd $(CLIENT_JS) && npm ci --silent --no-audit --no-fund
	touch $@

$(CLIENT_JS)/dist/charts-client.js: $(CLIENT_JS)/node_modules/.package-lock.json $(CLIENT_JS)/tsconfig.json $(wildcard $(CLIENT_JS)/src/*.ts)
	cd $(CLIENT_JS) && npm run --silent build
	touch $@

system-deps:
	./scripts/system-deps.sh

# The development server with the demo chart seeded (1,000,000 candles) and kept moving.
run: install
	@echo "Serving on http://$(HOST):$(PORT) (API docs at http://$(HOST):$(PORT)/docs)"
	@echo "Demo page: http://$(HOST):$(PORT)/demo?chart=demo (ready once the demo chart is seeded)"
	$(BIN)/charts-backend demo --serve --host $(HOST) --port $(PORT)

run-production: install
	$(BIN)/charts-backend serve --host $(HOST) --port $(PORT)

test: install system-deps client-js
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-js

# The browser client's protocol tests (Node's test runner), against servers they start.
test-js: install client-js
	cd $(CLIENT_JS) && PYTHON="$(abspath $(BIN))/python" npm test --silent

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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis $(CLIENT_JS)/node_modules $(CLIENT_JS)/dist
