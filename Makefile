# edgeship: two commands set up everything on a fresh machine:
#   make export TARGET=tflite     (creates .venv, installs, exports the demo)
#   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TARGET ?= all
PRECISION ?= all
DEVICE ?= local
PYTEST_ARGS ?=

.PHONY: setup export eval profile gate report lint test test-all bench lab clean

setup: $(STAMP)

# torch first: 2.13.0 is the CPU wheel on this machine; any looser spec pulls CUDA builds.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

export: setup
	$(BIN)/edgeship export --target $(TARGET) --precision $(PRECISION)

eval: setup
	$(BIN)/edgeship eval

profile: setup
	$(BIN)/edgeship profile --device $(DEVICE)

# gate judges what eval and profile measured: run them first, then the budgets decide.
gate: setup
	$(BIN)/edgeship eval
	$(BIN)/edgeship profile --device $(DEVICE)
	$(BIN)/edgeship gate

report: setup
	$(BIN)/edgeship report

# the layers contract (docs/architecture.md): imports run downward, no circles, a grouped core
lint: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

test: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run_all.py

# root only: an arm64 board behind ssh and a Ray lab (head + 2 workers) on network namespaces,
# the demo through them end to end, then torn down (tests/lab.py; docs/devices.md, docs/cluster.md)
lab: setup
	$(BIN)/python -m tests.lab

clean:
	rm -rf build
