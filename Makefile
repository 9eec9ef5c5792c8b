# trainfaas: `make demo` trains a real classifier end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pins torch and torchvision to a pair built together (override: make CONSTRAINTS= ...).
CONSTRAINTS ?= -c deploy/constraints.txt

.PHONY: demo test bench chaos install lint clean

$(BIN)/trainfaas: pyproject.toml deploy/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e '.[dev]'
	@touch $@

install: $(BIN)/trainfaas

demo: install
	$(BIN)/trainfaas demo

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	for b in dispatch throughput cold_start recovery autoscale api_load enqueue webhooks ui training_overhead yolo text; do $(BIN)/python -m tests.perf.bench_$$b || exit 1; done

chaos: install
	$(BIN)/python -m tests.chaos.soak

lint: install
	$(BIN)/ruff check services adapters functions scheduler deploy tests

clean:
	rm -rf $(VENV) .trainfaas
