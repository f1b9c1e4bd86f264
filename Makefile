# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install system-deps run run-production test lint format typecheck check bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

system-deps:
	./scripts/system-deps.sh

run: install
	@echo "Serving on http://$(HOST):$(PORT) (API docs at http://$(HOST):$(PORT)/docs)"
	$(BIN)/uvicorn lightweight_charts_pro_backend.app:create_app --factory --host $(HOST) --port $(PORT)

run-production: install
	$(BIN)/uvicorn lightweight_charts_pro_backend.app_production:create_app --factory --host $(HOST) --port $(PORT)

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
