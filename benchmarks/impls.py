"""The implementations under test, each as (model builder, inference fn, training step).

Every implementation builds the same architecture: ``levels`` resolution levels with widths
``w, 2w, 4w, ...``, two 3x3 conv-BN-ReLU per block, 2x2 max-pool down, 2x2 transposed conv up
(halving the channels), concatenated skips, a 1x1 head with 2 classes. MONAI's BasicUNet is
configured to match (batch norm, ReLU, deconv); its last up-convolution keeps the channels
(``halves=False``), so its FLOP count differs slightly and is reported per implementation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.config import TrainConfig
from unetkit.infer.optimize import optimize_for_inference
from unetkit.model import UNet, UNetConfig
from unetkit.precision import autocast, to_channels_last, training_precision, use_channels_last

INFER_IMPLS = (
    "monai-basicunet",
    "unetkit-eager-fp32",
    "unetkit-float",
    "unetkit-default",
    "unetkit-bf16",
    "unetkit-compile",
    "ort-fp32",
    "ort-int8",
)
TRAIN_IMPLS = (
    "monai-basicunet",
    "unetkit-eager-fp32",
    "unetkit-default",
    "unetkit-bf16",
    "unetkit-ckpt-encoder",
    "unetkit-ckpt-all",
)


def unetkit_config(spatial_dims: int, width: int, levels: int, **kw: Any) -> UNetConfig:
    """The benchmark architecture as a unetkit config."""
    widths = tuple(width * 2**i for i in range(levels))
    return UNetConfig(spatial_dims=spatial_dims, in_channels=1, out_channels=2, widths=widths, **kw)


def monai_model(spatial_dims: int, width: int, levels: int) -> nn.Module:
    """MONAI BasicUNet configured like the benchmark architecture (needs five levels)."""
    from monai.networks.nets import BasicUNet

    if levels != 5:
        raise ValueError("monai-basicunet: BasicUNet has exactly five levels")
    features = (*(width * 2**i for i in range(5)), width)
    return BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=2,
        features=features,
        norm=("batch", {}),
        act=("relu", {"inplace": True}),
        upsample="deconv",
    )


def reference_model(impl: str, spatial_dims: int, width: int, levels: int) -> nn.Module:
    """The fp32 eager model of an implementation (for FLOP counting and as the base)."""
    torch.manual_seed(0)
    if impl == "monai-basicunet":
        return monai_model(spatial_dims, width, levels)
    checkpointing = {"unetkit-ckpt-encoder": "encoder", "unetkit-ckpt-all": "all"}.get(impl, "off")
    return UNet(unetkit_config(spatial_dims, width, levels, checkpointing=checkpointing))


def calibration_batches(batch: int, spatial: tuple[int, ...], n: int = 2) -> list[Tensor]:
    """Real images for int8 calibration: crops of ``../shared/data/isbi2012-em`` (2D), z-scored.

    Falls back to the built-in synthetic data where the shared data is absent or for 3D.
    """
    root = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "isbi2012-em"
    images: list[np.ndarray] = []
    if len(spatial) == 2 and root.is_dir():
        from unetkit.io.images import read_image

        for path in sorted((root / "images").glob("*.png"))[: n * batch]:
            img = read_image(path)[:, : spatial[0], : spatial[1]]
            if img.shape[1:] == spatial:
                images.append(img)
    if len(images) < n * batch:
        from unetkit.data.synthetic import make_synthetic

        samples = make_synthetic(n * batch, spatial_dims=len(spatial), size=spatial, seed=1)
        images = [s.image for s in samples]
    arr = np.stack(images).astype(np.float32)
    arr = (arr - arr.mean(axis=tuple(range(1, arr.ndim)), keepdims=True)) / (
        arr.std(axis=tuple(range(1, arr.ndim)), keepdims=True) + 1e-6
    )
    return [torch.from_numpy(arr[i * batch : (i + 1) * batch]) for i in range(n)]


class OrtModel:
    """An ONNX Runtime session called like a model: ``(B, 1, *S) float32 -> (B, K, *S)``."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: Tensor) -> Tensor:
        (y,) = self.session.run(None, {"x": x.numpy()})
        return torch.from_numpy(y)


def export_onnx(model: nn.Module, example: Tensor, path: Path) -> None:
    """Export the batch-norm-folded fp32 model (static shape) to ONNX."""
    folded = optimize_for_inference(model, precision="fp32", channels_last=False).model
    torch.onnx.export(
        folded, (example,), str(path), input_names=["x"], output_names=["y"], dynamo=False
    )


def quantize_int8(fp32_path: Path, path: Path, batches: list[Tensor]) -> None:
    """Static int8 quantisation (QDQ, per-channel weights, u8 activations) calibrated on
    ``batches``, with ONNX Runtime's own tools."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = [{"x": b.numpy()} for b in batches]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return self.items.pop() if self.items else None

    quantize_static(
        str(fp32_path),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )


def build_infer(
    impl: str, model: nn.Module, x: Tensor, threads: int, workdir: Path
) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """The inference function of ``impl`` for ``model`` and notes (e.g. compile seconds)."""
    notes: dict[str, Any] = {}
    model = model.eval()
    if impl in ("monai-basicunet", "unetkit-eager-fp32"):
        return model, notes
    if impl == "unetkit-float":  # the optimised float path (what auto runs without int8)
        fast = optimize_for_inference(model)
        notes.update(precision=fast.precision, channels_last=fast.channels_last)
        return fast, notes
    if impl == "unetkit-default":  # what `unetkit predict` runs for a calibrated trained model
        from unetkit.infer.engine import inference_network
        from unetkit.infer.int8 import calibrate, has_vnni

        if not has_vnni():  # auto stays on the float path
            fast = optimize_for_inference(model)
            notes.update(precision=fast.precision)
            return fast, notes
        spatial = tuple(x.shape[2:])
        ranges = calibrate(model, calibration_batches(x.shape[0], spatial))
        entry = {"ranges": ranges}
        notes["precision"] = "int8"
        return inference_network(model, "int8", entry), notes
    if impl == "unetkit-bf16":
        return optimize_for_inference(model, precision="bf16"), notes
    if impl == "unetkit-compile":
        import time

        fast = optimize_for_inference(model, compile=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            fast(x)
        notes["compile_s"] = time.perf_counter() - t0
        notes["precision"] = fast.precision
        return fast, notes
    if impl in ("ort-fp32", "ort-int8"):
        fp32_path = workdir / "model.onnx"
        export_onnx(model, x, fp32_path)
        path = fp32_path
        if impl == "ort-int8":
            path = workdir / "model.int8.onnx"
            spatial = tuple(x.shape[2:])
            quantize_int8(fp32_path, path, calibration_batches(x.shape[0], spatial))
        return OrtModel(path, threads), notes
    raise ValueError(f"unknown inference implementation {impl!r}")


def build_train(
    impl: str, model: nn.Module, spatial_dims: int
) -> tuple[Callable[[Tensor, Tensor], None], dict[str, Any]]:
    """One training step (forward, cross-entropy, backward, SGD update) of ``impl``.

    SGD with Nesterov momentum 0.9 for all; unetkit's is built by the trainer's
    :func:`unetkit.train.schedule.make_optimizer` (fused on the CPU), the others' by PyTorch's
    defaults (a per-tensor loop on the CPU).

    The unetkit-default/ckpt steps run in the memory format of the default config
    (:class:`unetkit.config.TrainConfig`) and in the precision the automatic recipe sets
    (``auto``, :mod:`unetkit.train.recipe`): this very step is timed in fp32 and bf16 to
    choose, as the trainer times its own (bf16 on a CPU with AMX, fp32 elsewhere).
    """
    model.train()
    precision, channels_last = "fp32", False
    if impl.startswith("unetkit"):  # the trainer's optimiser (fused where it can be)
        from unetkit.train.schedule import make_optimizer

        opt = make_optimizer(model.parameters(), "sgd", 1e-3, 0.0, 0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    state = {"precision": precision, "channels_last": channels_last}

    def step(x: Tensor, y: Tensor) -> None:
        if state["channels_last"]:
            x = to_channels_last(x, spatial_dims)
        opt.zero_grad(set_to_none=True)
        with autocast(str(state["precision"])):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()

    if impl in ("unetkit-default", "unetkit-ckpt-encoder", "unetkit-ckpt-all"):
        defaults = TrainConfig()
        channels_last = use_channels_last(defaults.channels_last, spatial_dims)
        state["channels_last"] = channels_last
        if channels_last:
            model = to_channels_last(model, spatial_dims)
        precision = training_precision("auto", measure=_timer(model, spatial_dims))
    elif impl == "unetkit-bf16":
        precision, channels_last = "bf16", use_channels_last("auto", spatial_dims)
        if channels_last:
            model = to_channels_last(model, spatial_dims)
    state.update(precision=precision, channels_last=channels_last)
    return step, {"precision": precision, "channels_last": channels_last}


def _timer(model: nn.Module, spatial_dims: int) -> Callable[[str], float]:
    """Seconds of one forward and backward of a small batch in a precision (for ``auto``);
    the weights and statistics are restored afterwards."""
    import copy
    import time

    def measure(precision: str) -> float:
        x = torch.randn(1, 1, *([64] * spatial_dims))
        y = torch.zeros(1, *([64] * spatial_dims), dtype=torch.long)
        saved = copy.deepcopy(model.state_dict())
        start = time.perf_counter()
        with autocast(precision):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        seconds = time.perf_counter() - start
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
        return seconds

    return measure


def new_workdir() -> Path:
    """A temporary folder for exported models, removed at exit."""
    d = tempfile.TemporaryDirectory(prefix="unetkit-bench-")
    _KEEP.append(d)
    return Path(d.name)


_KEEP: list[tempfile.TemporaryDirectory[str]] = []
