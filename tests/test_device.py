"""The one device choice (``--device auto|cpu|cuda|cuda:N``), tested on any machine: how it is
resolved, how it is refused, and the device-independent parts of the GPU path (recipe scaling,
batches, RNG states, gradient scaling). ``tests/cuda/`` runs the real thing where a GPU is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit import precision as policy
from unetkit.config import TrainConfig, load_run_config
from unetkit.model import UNet, UNetConfig
from unetkit.tasks.base import TaskBatch
from unetkit.train import checkpoint as ckpt
from unetkit.train.recipe import DataSummary, gpu_settings, recipe_settings
from unetkit.train.resume_check import MUTABLE

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int, current: int = 0) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)


def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("auto", None, "AUTO", "cpu", " cpu "):
        assert policy.resolve_device(spec) == torch.device("cpu")


def test_a_gpu_asked_for_without_one_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(ValueError, match=r"^--device .*no CUDA GPU.*use --device cpu"):
            policy.resolve_device(spec)


def test_gpus_are_chosen_by_index_local_rank_or_current(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, count=2, current=1)
    assert policy.resolve_device("auto") == torch.device("cuda", 1)
    assert policy.resolve_device("cuda") == torch.device("cuda", 1)
    assert policy.resolve_device("cuda:0") == torch.device("cuda", 0)
    assert policy.resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert policy.resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"GPU 5 does not exist \(2 visible: cuda:0..cuda:1\)"):
        policy.resolve_device("cuda:5")
    with pytest.raises(ValueError, match="GPU 2 does not exist"):
        policy.resolve_device("cuda", local_rank=2)


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps0", ""])
def test_misspelt_devices_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
        policy.resolve_device(spec)


def test_the_config_checks_the_spelling_and_resume_may_change_the_device() -> None:
    assert TrainConfig(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValueError, match="device: expected auto, cpu, cuda or cuda:N"):
        TrainConfig(device="gpu")
    assert load_run_config(overrides=["train.device=cpu"]).train.device == "cpu"
    assert MUTABLE["train.device"] == "--device"


def test_fp16_is_a_gpu_training_precision_only() -> None:
    with pytest.raises(ValueError, match="'fp16' training needs a CUDA device"):
        policy.training_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="'fp16' is for training on CUDA"):
        policy.inference_precision("fp16", "cpu")
    scaler = policy.grad_scaler("fp16", "cpu")
    assert not scaler.is_enabled()  # a pass-through on the CPU
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss


def test_on_device_moves_a_copy_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    model = UNet(UNetConfig(widths=(4, 8)))
    assert policy.on_device(model, None, copy=True) is model
    assert policy.on_device(model, "cpu", copy=True) is model  # already there
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        policy.on_device(model, "cuda", copy=True)


def test_exact_fp32_changes_nothing_on_the_cpu() -> None:
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with policy.exact_fp32("cpu"):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_a_cpu_batch_is_not_copied() -> None:
    batch = TaskBatch(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
    assert batch.to(torch.device("cpu")) is batch


def test_rng_states_without_a_gpu_restore_and_ignore_foreign_gpu_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(3)
    tensors, meta = ckpt.rng_states()
    if not torch.cuda.is_available():
        assert "rng/cuda" not in tensors
    expected = torch.rand(4)
    torch.manual_seed(99)
    # a checkpoint written on a GPU machine, resumed here: the CPU states still restore
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ckpt.set_rng_states({**tensors, "rng/cuda": torch.zeros(1, 16, dtype=torch.uint8)}, meta)
    assert torch.equal(torch.rand(4), expected)


def _summary(shape: tuple[int, ...] = (1024, 1024)) -> DataSummary:
    return DataSummary(
        spatial_dims=len(shape),
        in_channels=1,
        num_classes=2,
        median_shape=shape,
        class_frequencies=(0.7, 0.3),
        oriented=False,
        num_images=20,
    )


def test_the_gpu_recipe_uses_what_a_gpu_affords() -> None:
    cpu = recipe_settings(_summary(), 10.0)
    small = gpu_settings(_summary(), 10.0, "cuda", free_bytes=4 * 2**30)
    big = gpu_settings(_summary(), 10.0, "cuda", free_bytes=80 * 2**30)
    assert np.prod(small["data.patch_size"]) > np.prod(cpu["data.patch_size"])
    assert small["model.widths"][0] == 32 > cpu["model.widths"][0]
    assert 2 <= small["train.batch_size"] < big["train.batch_size"] <= 64
    # the patch stays a multiple of the downsampling factor and within the image
    factor = 2 ** (len(big["model.widths"]) - 1)
    assert all(p % factor == 0 and p <= 1024 for p in big["data.patch_size"])
    # everything else is the recipe's (loss, schedule)
    assert big["train.loss"] == cpu["train.loss"] and big["train.schedule"] == cpu["train.schedule"]


@no_gpu
def test_train_on_a_missing_gpu_fails_in_one_line_and_writes_nothing(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--device", "cuda", "--epochs", "1")
    assert r.returncode == 2
    assert r.stderr.startswith("unetkit: error: --device cuda: no CUDA GPU")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


@no_gpu
def test_predict_on_a_missing_gpu_fails_in_one_line_and_writes_nothing(
    cli, tmp_path: Path
) -> None:
    from unetkit.modelfile import save

    model_path = tmp_path / "m.safetensors"
    save(UNet(UNetConfig(widths=(4, 8))), model_path)
    image = tmp_path / "a.npy"
    np.save(image, np.zeros((16, 16), dtype=np.float32))
    out = tmp_path / "pred"
    r = cli("predict", "--model", str(model_path), "--input", str(image), "--out", str(out),
            "--device", "cuda:1")
    assert r.returncode == 2 and "--device cuda:1: no CUDA GPU" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_predict_api_runs_where_asked_and_leaves_the_callers_model(tmp_path: Path) -> None:
    from unetkit import predict

    model = UNet(UNetConfig(widths=(4, 8)))
    image = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    a = predict(model, image, precision="fp32")
    b = predict(model, image, precision="fp32", device="cpu")
    assert np.array_equal(a, b)
    assert next(model.parameters()).device.type == "cpu"


@no_gpu
def test_lab_on_a_missing_gpu_is_refused_before_anything_runs(cli, tmp_path: Path) -> None:
    out = tmp_path / "lab"
    r = cli("lab", "concat-cost", "--quick", "--out", str(out), "--device", "cuda")
    assert r.returncode == 2 and "--device cuda: no CUDA GPU" in r.stderr
    assert not out.exists()


def test_lab_training_returns_the_model_to_the_cpu() -> None:
    from unetkit.lab.common import cross_entropy, train_steps

    model = UNet(UNetConfig(widths=(4, 8)))
    x, y = torch.randn(2, 1, 16, 16), torch.randint(0, 2, (2, 16, 16))
    before = [p.detach().clone() for p in model.parameters()]
    losses = train_steps(model, lambda _s: (x, y), 3, cross_entropy, device="auto")
    assert len(losses) == 3 and next(model.parameters()).device.type == "cpu"
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
