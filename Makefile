# One-command set-up on a fresh machine. torch is installed first and pinned: it is the local
# CPU build here, and anything that resolves torch on its own would pull CUDA wheels.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: venv demo test lint bench clean nnunet-venv

$(BIN)/unetkit: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev,fuzz]"
	touch $(BIN)/unetkit

venv: $(BIN)/unetkit

# The main job: train on the built-in synthetic data, then predict and evaluate on images the
# model has never seen (another seed of the same generator).
demo: venv
	rm -rf runs/demo
	$(BIN)/unetkit train --out runs/demo
	$(BIN)/unetkit synth runs/demo/unseen --n 8 --seed 1
	$(BIN)/unetkit predict --model runs/demo --input runs/demo/unseen --out runs/demo/predictions
	$(BIN)/unetkit evaluate --pred runs/demo/predictions --truth runs/demo/unseen/masks \
		--json runs/demo/evaluation.json

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -x --durations=25

lint: venv
	$(BIN)/ruff check src tests benchmarks

# nnU-Net v2, the peer of benchmarks/quality.py, in its own venv so that its dependencies never
# touch unetkit's: torch first and pinned (constraints), then nnU-Net. Its timm dependency pulls
# torchvision, whose PyPI wheel does not load with the CPU torch here; nnU-Net's 2D trainer and
# predictor do not import it, so it is removed.
NNUNET_VENV ?= .venv-nnunet
nnunet-venv:
	$(PY) -m venv $(NNUNET_VENV)
	$(NNUNET_VENV)/bin/pip install -q --upgrade pip
	$(NNUNET_VENV)/bin/pip install -q $(TORCH)
	echo "$(TORCH)" > $(NNUNET_VENV)/constraints.txt
	$(NNUNET_VENV)/bin/pip install -q -c $(NNUNET_VENV)/constraints.txt "nnunetv2>=2.5"
	$(NNUNET_VENV)/bin/pip uninstall -q -y torchvision
	$(NNUNET_VENV)/bin/python -c "import torch, nnunetv2.run.run_training; print('nnU-Net', torch.__version__)"

clean:
	rm -rf $(VENV) runs out
