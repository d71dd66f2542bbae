# drizzleflow: two commands that work on a fresh machine with Python 3.11 and a C compiler.
#   make demo   create .venv, install drizzleflow, simulate the M2 data set and run the
#               tutorial recipe into demo_output/ (DEMO_RECIPE=configs/toy.yaml: engine-only demo)
#   make test   create .venv, install with the test extra, run the test suite
# Both are idempotent: the venv and the installs are redone only when pyproject.toml,
# setup.py or a Cython source changed; a second `make demo` is served from the cache.

PYTHON      ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV        ?= .venv
BIN         := $(VENV)/bin
DEMO_RECIPE ?= configs/m2_tutorial.yaml
DEMO_OUTPUT ?= demo_output
PYTEST_ARGS ?= -q
BUILD_DEPS  := pyproject.toml setup.py $(shell find steps engine -name '*.pyx' 2>/dev/null)
PIP         := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: demo test venv install clean-demo bytecode

$(BIN)/python:
	@echo "creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "drizzleflow needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip

venv: $(BIN)/python

$(VENV)/.installed: $(BUILD_DEPS) | $(BIN)/python
	@echo "installing drizzleflow into $(VENV) (compiles the Cython core)"
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: $(BUILD_DEPS) | $(BIN)/python
	@echo "installing drizzleflow[test] into $(VENV) (compiles the Cython core)"
	$(PIP) install -e '.[test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

# bytecode of our own modules, as pip writes it for a regular install (an editable one does
# not, and with PYTHONDONTWRITEBYTECODE every command would compile them again: ~0.07 s);
# only files changed since the last time are compiled
bytecode: | $(BIN)/python
	@$(BIN)/python -m compileall -q engine steps >/dev/null

demo: $(VENV)/.installed bytecode
	$(BIN)/drizzleflow run $(DEMO_RECIPE) --output $(DEMO_OUTPUT) --overwrite

test: $(VENV)/.installed-test bytecode
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_OUTPUT)

# The reference software (DrizzlePac, drizzle, TweakReg/tweakwcs, stwcs) for the side-by-side
# benchmarks lives in its own environment so its pins never touch drizzleflow's.
BENCHENV ?= .benchenv
bench-env: $(BENCHENV)/bin/python
$(BENCHENV)/bin/python:
	$(PYTHON) -m venv $(BENCHENV)
	$(BENCHENV)/bin/python -m pip install -q --disable-pip-version-check drizzlepac drizzle tweakwcs stwcs
.PHONY: bench-env
