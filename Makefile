# trainfaas: `make demo` trains a real classifier end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU builds of torch/torchvision unless a GPU is present (override: make TORCH_CONSTRAINTS= ...).
TORCH_CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,-c deploy/constraints-cpu.txt)

.PHONY: demo test bench install lint clean

$(BIN)/trainfaas: pyproject.toml deploy/constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_CONSTRAINTS) -e '.[dev]'
	@touch $@

install: $(BIN)/trainfaas

demo: install
	$(BIN)/trainfaas demo

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m tests.perf.bench_autoscale

lint: install
	$(BIN)/ruff check services adapters functions scheduler deploy tests

clean:
	rm -rf $(VENV) .trainfaas
