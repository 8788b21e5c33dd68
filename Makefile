# One-command set-up on a fresh machine. torch is installed first and pinned: it is the local
# CPU build here, and anything that resolves torch on its own would pull CUDA wheels.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: venv demo test lint bench clean

$(BIN)/unetkit: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/unetkit

venv: $(BIN)/unetkit

demo: venv
	$(BIN)/unetkit info --preset unet2d_small --input-size 256 256

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -x

lint: venv
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs out
