# intvit: make demo (the main job) and make test (what CI runs). Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/intvit demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest --collect-only -q > /dev/null
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/kernels.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
