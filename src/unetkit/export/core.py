"""Tracing, parity checks and atomic writing shared by the ONNX and TorchScript exports."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from unetkit import precision as policy
from unetkit.errors import UnetkitError
from unetkit.export.settings import inference_settings, input_size_for_export
from unetkit.infer.engine import run_network
from unetkit.io.atomic import atomic_save_bytes
from unetkit.model import UNet

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# An export matches when max |export - eager| <= TOLERANCE * max(1, max |eager|): float32
# reductions (instance norm over a 3D volume) are summed in another order by other runtimes.
TOLERANCE = 1e-4


class ExportableUNet(nn.Module):
    """The network without the eager pad-and-crop step: :meth:`UNet.forward_core`.

    ``x: (B, C_in, *S) -> (B, K, *S_out)``. Identical to ``UNet.forward`` on inputs that need no
    padding (same mode: sizes multiple of ``downsample_factor``; valid mode: valid sizes), and
    free of Python shape arithmetic, so a trace keeps the batch and spatial axes dynamic. The
    model's own walk is traced, so every block, fusion and up/down option exports as it runs.
    """

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.net = model

    def forward(self, x: Tensor) -> Tensor:
        return self.net.forward_core(x)  # (B, K, *S_out)


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how closely the export matched eager PyTorch.

    Attributes:
        path: the exported model; ``settings_path``: the JSON beside it.
        max_abs_diff: largest ``|export - eager|`` over the checked inputs.
        checked_shapes: the input shapes the export was run on.
        settings: the JSON content.
    """

    path: Path
    settings_path: Path
    max_abs_diff: float
    checked_shapes: list[tuple[int, ...]]
    settings: dict[str, Any]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the tracer's warnings about Python values (they are checked by parity)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def check_shapes(model: UNet, size: Sequence[int]) -> list[tuple[int, ...]]:
    """Inputs to compare on: the export size, and in same mode a second batch and size."""
    c = model.config
    first = (1, c.in_channels, *size)
    if c.padding == "valid":
        return [first, (2, c.in_channels, *size)]
    factors = c.downsample_factors
    other = tuple(s + f * (1 + i) for i, (s, f) in enumerate(zip(size, factors, strict=True)))
    return [first, (2, c.in_channels, *other)]


def _run_export(fmt: Format, wrapper: nn.Module, example: Tensor, tmp: Path, dynamic: bool) -> None:
    if fmt == "onnx":
        from unetkit.export.onnx import write_onnx

        write_onnx(wrapper, example, tmp, dynamic_spatial=dynamic)
    else:
        from unetkit.export.torchscript import write_torchscript

        write_torchscript(wrapper, example, tmp)


def _run_exported(
    fmt: Format, path: Path, x: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    if fmt == "onnx":
        from unetkit.export.onnx import run_onnx

        return run_onnx(path, x)  # onnxruntime's CPU provider
    from unetkit.export.torchscript import run_torchscript

    return run_torchscript(path, x, device)


def export_model(
    model: UNet,
    path: str | os.PathLike[str],
    fmt: Format,
    metadata: Mapping[str, Any] | None = None,
    *,
    input_size: int | Sequence[int] | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
) -> ExportReport:
    """Export ``model`` to ``path`` and write ``<path>.json`` beside it (see the module doc).

    Args:
        model: the network (exported in eval mode; its state is restored).
        path: output file (``.onnx`` / ``.pt`` conventionally).
        fmt: ``"onnx"`` or ``"torchscript"``.
        metadata: the trained model's metadata (normalisation, classes, patch size).
        input_size: spatial size traced and checked; default: the inference tile size
            (valid mode: the fixed input size of the export).
        seed: seed of the random check inputs.
        device: where the parity check runs eager PyTorch and the TorchScript file (the file is
            traced on the CPU and loads anywhere); ONNX runs on onnxruntime's CPU provider.

    Raises:
        UnetkitError: the export differs from eager PyTorch (nothing is written), or onnx /
            onnxruntime are not installed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(path)
    if out.is_dir():
        raise UnetkitError(f"{out}: is a folder; --out names the exported file")
    meta = dict(metadata or {})
    dev = policy.resolve_device(device)
    model = policy.on_device(model, "cpu", copy=True)  # traced on the CPU: a portable file
    reference = policy.on_device(model, dev, copy=True)
    size = input_size_for_export(model, meta, input_size)
    was_training = model.training
    model.eval()
    try:
        wrapper = ExportableUNet(model).eval()
        gen = torch.Generator().manual_seed(seed)
        shapes = check_shapes(model, size)
        inputs = [torch.randn(s, generator=gen) for s in shapes]
        dynamic = model.config.padding == "same"
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmpdir:
            tmp = Path(tmpdir) / out.name
            with _quiet(), torch.no_grad():
                _run_export(fmt, wrapper, inputs[0], tmp, dynamic)
            worst = 0.0
            for x in inputs:
                eager = run_network(reference, x.to(dev), fast=False).cpu().numpy()
                try:
                    got = _run_exported(fmt, tmp, x.numpy(), dev)
                except Exception as exc:  # runtime errors of onnxruntime / TorchScript
                    raise UnetkitError(
                        f"{out}: the exported model failed on input shape {tuple(x.shape)}: "
                        f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}"
                    ) from None
                if got.shape != eager.shape:
                    raise UnetkitError(
                        f"{out}: the export gives shape {got.shape} for input "
                        f"{tuple(x.shape)}, eager PyTorch {eager.shape}; nothing was written"
                    )
                diff = float(np.max(np.abs(got - eager))) if got.size else 0.0
                worst = max(worst, diff)
                tol = TOLERANCE * max(1.0, float(np.max(np.abs(eager))) if eager.size else 1.0)
                if not diff <= tol:
                    raise UnetkitError(
                        f"{out}: the export differs from eager PyTorch by {diff:.3g} on input "
                        f"shape {tuple(x.shape)} (tolerance {tol:.3g}); nothing was written"
                    )
            atomic_save_bytes(out, tmp.read_bytes())
    finally:
        if was_training:
            model.train()
    settings = inference_settings(model, meta, fmt, out.name, size)
    settings["parity"] = {
        "max_abs_diff": worst,
        "checked_input_shapes": [list(s) for s in shapes],
        "tolerance": f"{TOLERANCE} * max(1, max |eager|)",
    }
    settings_path = out.with_name(out.name + ".json")
    atomic_save_bytes(settings_path, (json.dumps(settings, indent=2) + "\n").encode())
    return ExportReport(
        path=out,
        settings_path=settings_path,
        max_abs_diff=worst,
        checked_shapes=shapes,
        settings=settings,
    )
