"""ONNX export through the TorchScript-based exporter, and running it with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from unetkit.errors import UnetkitError

OPSET = 17


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UnetkitError(
            f"--format onnx needs the '{module}' package: pip install 'unetkit[onnx]'"
        )


def write_onnx(model: nn.Module, example: Tensor, path: Path, *, dynamic_spatial: bool) -> None:
    """Trace ``model`` on ``example (B, C, *S)`` into an ONNX file at ``path``.

    The batch axis is always dynamic; the spatial axes too when ``dynamic_spatial``.
    """
    _require("onnx")
    spatial = range(2, example.ndim)
    names = ["depth", "height", "width"][-len(spatial) :] if len(spatial) > 1 else ["length"]
    in_axes: dict[int, str] = {0: "batch"}
    out_axes: dict[int, str] = {0: "batch"}
    if dynamic_spatial:
        for axis, name in zip(spatial, names, strict=True):
            in_axes[axis] = name
            out_axes[axis] = name
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": in_axes, "logits": out_axes},
        opset_version=OPSET,
        do_constant_folding=True,
    )
    import onnx

    onnx.checker.check_model(str(path))


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """Run an exported model with onnxruntime on the CPU: ``(B, C, *S) -> (B, K, *S_out)``."""
    _require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"image": x.astype(np.float32)})[0])
