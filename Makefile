# intvit: make demo (the main job) and make test (what CI runs). Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install system-deps plugin demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,peers,mnist]'
	touch $@

install: $(BIN)/.installed

# The aarch64 cross compiler (Debian) for exporting ARM libraries; llvm-19 (llvm-mc, llvm-mca,
# llvm-nm) for the static analysis and the costing of counted blocks; Debian's dynamically linked
# qemu-user, which loads the counting plugin (qemu-user-static, the emulated device's, loads
# none); a C compiler for the plugin. Needs root and apt.
system-deps:
	@missing=""; \
	command -v aarch64-linux-gnu-g++ >/dev/null || missing="$$missing g++-aarch64-linux-gnu"; \
	command -v llvm-mca-19 >/dev/null || missing="$$missing llvm-19"; \
	command -v qemu-aarch64 >/dev/null || missing="$$missing qemu-user"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note:$$missing missing; ARM export tests and the static analysis will be skipped"; fi; \
	fi

# The QEMU TCG plugin that counts executed blocks (intvit/analysis/plugin/tbcount.c), built into
# the project's cache folder; the counting code also builds it on first use.
plugin: install system-deps
	$(BIN)/python -c "from intvit.analysis.qemu_count import plugin_path; print(plugin_path())"

demo: install
	$(BIN)/intvit demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The default run first, then the checks marked slow or device (CI runs both).
test: lint system-deps
	$(BIN)/python -m pytest --collect-only -q > /dev/null
	$(BIN)/python -m pytest -q -m "not slow and not device"
	$(BIN)/python -m pytest -q -m "slow or device"

bench: install
	$(BIN)/python benchmarks/kernels.py
	$(BIN)/python benchmarks/gemm.py
	$(BIN)/python benchmarks/e2e.py
	$(BIN)/python benchmarks/gelu_less.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
