# Two entry points, both self-contained on a fresh clone:
#   make demo   -> creates .venv, installs the package, runs the demo
#   make test   -> creates .venv, installs the package with test extras, runs the suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

.PHONY: install demo test bench clean
install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python -m xspec_sbi.demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -ra -q

bench: $(BIN)/.installed
	$(BIN)/python scripts/bench_simulator.py

clean:
	rm -rf $(VENV) build *.egg-info
