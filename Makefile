# mammocadx: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs everything, runs the demo on the built-in synthetic cohort
#   make test   creates .venv if needed, installs everything, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision first, pinned: on this kind of machine these builds lie on local disk.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "[1/2] installing PyTorch ($(TORCH)): about a minute"
	$(BIN)/pip install --disable-pip-version-check --progress-bar off $(TORCH)
	@echo "[2/2] installing mammocadx and its dependencies: a few minutes"
	$(BIN)/pip install --disable-pip-version-check --progress-bar off -e '.[dev]'
	@echo "installed; try: $(BIN)/mammocadx --help"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/mammocadx demo --out runs/demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -m "slow or not slow"

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_features.py --repeats 3
	$(BIN)/python benchmarks/bench_evaluate.py
	$(BIN)/python benchmarks/bench_finetune.py --n 256 --epochs 8
	$(BIN)/python benchmarks/bench_ray.py

clean:
	rm -rf runs .pytest_cache
