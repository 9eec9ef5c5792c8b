# trainfaas: `make demo` trains a real classifier end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pins torch and torchvision to a pair built together (override: make CONSTRAINTS= ...).
CONSTRAINTS ?= -c deploy/constraints.txt

.PHONY: demo test bench chaos install lint clean image service-images

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
	for b in dispatch throughput cold_start recovery autoscale scheduler_costs idle_costs api_load enqueue webhooks ui training_overhead quick_start yolo text; do $(BIN)/python -m tests.perf.bench_$$b || exit 1; done

chaos: install
	$(BIN)/python -m tests.chaos.soak

# The runner image trainfaas-runner:<version>, from a Debian base made here (deploy/build_image.py);
# service-images adds local Redis and PostgreSQL images for deploy/compose.yaml and stack.yaml.
image: install
	$(BIN)/python deploy/build_image.py

service-images: install
	$(BIN)/python deploy/build_image.py --services-only

lint: install
	$(BIN)/ruff check services adapters functions scheduler deploy tests

clean:
	rm -rf $(VENV) .trainfaas
