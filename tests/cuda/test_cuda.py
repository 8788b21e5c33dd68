"""The CUDA path end to end: training steps, exact resume, predict and export parity, DDP.

Every test here needs a CUDA GPU and skips cleanly without one (the suite stays green on a
CPU-only machine); ``benchmarks/cuda.py`` runs them first on a GPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.modelfile import load_with_metadata, read_tensors
from unetkit.workflow import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = [
    "model.widths=[8,16]",
    "data.synthetic_count=8",
    "data.synthetic_size=64",
    "data.patch_size=[64,64]",
    "train.steps_per_epoch=3",
    "train.batch_size=4",
    "train.device=cuda",
]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_tensors(run / "last" / "model.safetensors")[0]


def test_training_runs_on_the_gpu_and_the_model_loads_anywhere(tmp_path: Path) -> None:
    said: list[str] = []
    result = fit(None, tmp_path, overrides=[*TINY, "train.epochs=2"], echo=said.append)
    assert result.stopped == "finished" and result.steps == 6
    assert any(line.startswith("device: cuda") for line in said)
    model, _ = load_with_metadata(tmp_path / "model.safetensors")  # CPU tensors in the file
    assert next(model.parameters()).device.type == "cpu"
    assert all(torch.isfinite(t).all() for t in _weights(tmp_path).values())


def test_resume_on_the_gpu_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    common = [*TINY, "train.epochs=2", "train.deterministic=true", "train.precision=fp32"]
    fit(None, tmp_path / "straight", overrides=common, quiet=True)
    fit(None, tmp_path / "paused", overrides=common, stop_after=1, quiet=True)
    fit(out=tmp_path / "paused", resume=True, quiet=True)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "paused")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _trained(tmp_path: Path) -> Path:
    fit(None, tmp_path, overrides=[*TINY, "train.epochs=3"], quiet=True)
    return tmp_path / "model.safetensors"


def test_predict_on_the_gpu_matches_the_cpu(tmp_path: Path) -> None:
    from unetkit import predict
    from unetkit.data.synthetic import make_synthetic

    path = _trained(tmp_path)
    images = [s.image for s in make_synthetic(4, size=96, seed=7)]
    agreements = []
    for image in images:
        cpu = predict(path, image, precision="fp32", device="cpu")
        gpu = predict(path, image, precision="fp32", device="cuda")
        assert np.array_equal(cpu, gpu)  # fp32 without TF32: identical labels
        bf16 = predict(path, image, precision="bf16", device="cuda")
        agreements.append(float(np.mean(bf16 == cpu)))
    assert min(agreements) >= 0.995


def test_export_parity_on_the_gpu(tmp_path: Path) -> None:
    from unetkit.export.core import export_model

    model, meta = load_with_metadata(_trained(tmp_path))
    report = export_model(model, tmp_path / "m.pt", "torchscript", meta, device="cuda")
    assert report.max_abs_diff < 1e-3


def test_out_of_gpu_memory_is_one_clear_line(tmp_path: Path) -> None:
    from unetkit.errors import UnetkitError
    from unetkit.infer.predictor import PredictOptions, predict_array
    from unetkit.model import UNet, UNetConfig

    model = UNet(UNetConfig(widths=(64, 128, 256, 512))).cuda()
    free, _ = torch.cuda.mem_get_info()
    side = int((free / 4 / 64 * 40) ** 0.5)  # activations far beyond the free memory
    image = np.zeros((side, side), dtype=np.float32)
    with pytest.raises(UnetkitError, match="lower --batch-size or --tile"):
        predict_array(model, image, options=PredictOptions(tile="whole", precision="fp32"))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_ddp_with_nccl_on_two_gpus(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "-m", "unetkit", "train", "--out", str(tmp_path), "--epochs", "2", *TINY,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "model.safetensors").is_file()
