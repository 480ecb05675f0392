# Two entry points, both self-contained on a fresh clone:
#   make demo   -> creates .venv, installs the package, runs the demo
#   make test   -> creates .venv, installs the package with test extras, runs the suite:
#                  the engine tests (HEADAS unset: the xspectrampoline wheel's library), then
#                  the live PyXspec tests in their own process against ../shared/pyxspec's
#                  XSPEC 12.9.1, unpacked into .pyxspec/ (tests/run_pyxspec_live.sh)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# pytest-xdist processes for the engine tests and for the live PyXspec tests, a test file
# each (its module fixtures are built once); every test is single-threaded (one torch
# thread), so 2 fill CI's 2 cores. Each live worker has its own HOME (tests/conftest.py).
TEST_WORKERS ?= 2

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

.PHONY: install demo test test-live bench clean
install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python -m xspec_sbi.demo

test: $(BIN)/.installed
	env -u HEADAS $(BIN)/python -m pytest -ra -q -n $(TEST_WORKERS) --dist loadfile \
	    --ignore-glob='tests/test_pyxspec_live*'
	tests/run_pyxspec_live.sh $(BIN)/python -n $(TEST_WORKERS) --dist loadfile

test-live: $(BIN)/.installed
	tests/run_pyxspec_live.sh $(BIN)/python -n $(TEST_WORKERS) --dist loadfile

bench: $(BIN)/.installed
	$(BIN)/python scripts/bench_simulator.py

clean:
	rm -rf $(VENV) build *.egg-info .pyxspec .pyxspec.partial
