"""bioimage.io model packages (spec 0.5): one zip that Fiji, napari, ilastik and Icy open.

``export_bioimageio(model, out, metadata)`` writes ``out`` (a ``.zip``) holding::

    rdf.yaml              the description: axes, sizes, pre-processing, weights, tests, card
    weights.torchscript   TorchScript weights (traced, dynamic batch and spatial axes)
    weights.onnx          ONNX weights (opset 17; converted from the same network)
    test_input.npy        a raw image (B=1, C, *S) ...
    test_output.npy       ... and the logits the package must give for it
    cover.png             the test image beside its predicted labels
    README.md             the model card: architecture, training data, validation metrics, citation

Both weight files are run on two input sizes and compared with eager PyTorch before anything is
written; the test output is the network's output on the test input after the package's own
pre-processing (:func:`~unetkit.export.bioimageio_spec.apply_preprocessing`). There is no
``pytorch_state_dict`` entry: it would need the architecture as Python source, and the
description holds nothing executable. The zip is written atomically; an error leaves nothing.
This module needs neither ``bioimageio.spec`` nor ``bioimageio.core`` (the tests validate the
packages with them: ``pip install 'unetkit[bioimageio]'``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from unetkit.errors import UnetkitError
from unetkit.export.bioimageio_card import cover_png, model_card
from unetkit.export.bioimageio_spec import (
    INPUT_ID,
    OUTPUT_ID,
    apply_preprocessing,
    preprocessing,
    size_rule,
    tensor_axes,
)
from unetkit.export.core import TOLERANCE, ExportableUNet, _quiet
from unetkit.infer.engine import run_network
from unetkit.io.atomic import atomic_save_bytes
from unetkit.model import UNet

FORMAT_VERSION = "0.5.4"
OPSET = 17
UNET_CITATION = {
    "text": "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
    "Image Segmentation. MICCAI 2015",
    "doi": "10.1007/978-3-319-24574-4_28",
}
#: Largest test-tensor edge per spatial dimensionality (the tensors ship inside the zip).
TEST_EDGE = {1: 512, 2: 128, 3: 48}


@dataclass(frozen=True)
class BioimageioReport:
    """What :func:`export_bioimageio` wrote.

    Attributes:
        path: the zip; ``rdf``: its description as plain data.
        max_abs_diff: largest ``|export - eager|`` over both weight formats and checked sizes.
        checked_shapes: the input shapes the weights were run on.
    """

    path: Path
    rdf: dict[str, Any]
    max_abs_diff: float
    checked_shapes: list[tuple[int, ...]]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_size(model: UNet, metadata: Mapping[str, Any]) -> tuple[int, ...]:
    """Spatial size of the test tensors: the training patch (or a small default), at most
    :data:`TEST_EDGE`, made an allowed size (``min + n * step``)."""
    d = model.config.spatial_dims
    low, step = size_rule(model)
    patch = list(metadata.get("patch_size") or []) or [TEST_EDGE[d]] * d
    sizes = []
    for p in patch[:d] + [TEST_EDGE[d]] * (d - len(patch)):
        n = max(0, (min(int(p), TEST_EDGE[d]) - low) // step)
        sizes.append(low + max(n, 1) * step)
    return tuple(sizes)


def sample_image(channels: int, size: Sequence[int], seed: int = 0) -> np.ndarray:
    """A deterministic test image ``(1, C, *size)`` float32: bright smooth blobs on a dim
    background with noise, in 0..255 (raw intensities, before normalisation)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (channels, *size)
    blobs = np.zeros(shape, np.float32)
    for _ in range(max(3, int(np.prod(size)) // 400)):
        centre = tuple(rng.integers(0, n) for n in size)
        blobs[(slice(None), *centre)] = 1.0
    sigma = (0, *[max(1.0, n / 24) for n in size])
    blobs = ndimage.gaussian_filter(blobs, sigma)
    blobs /= max(float(blobs.max()), 1e-6)
    image = 30 + 180 * np.clip(blobs * 2.0, 0, 1) + rng.normal(0, 8, shape)
    return np.clip(image, 0, 255).astype(np.float32)[None]


def _write_weights(model: UNet, example: torch.Tensor, folder: Path) -> dict[str, Path]:
    from unetkit.export.onnx import write_onnx
    from unetkit.export.torchscript import write_torchscript

    wrapper = ExportableUNet(model).eval()
    paths = {"torchscript": folder / "weights.torchscript", "onnx": folder / "weights.onnx"}
    with _quiet(), torch.no_grad():
        write_torchscript(wrapper, example, paths["torchscript"])
        write_onnx(wrapper, example, paths["onnx"], dynamic_spatial=True)
    return paths


def _check_weights(
    model: UNet, paths: Mapping[str, Path], inputs: Sequence[np.ndarray], out: Path
) -> float:
    """Run both weight files on ``inputs`` and compare with eager PyTorch; the worst diff."""
    from unetkit.export.core import _run_exported

    worst = 0.0
    for x in inputs:
        eager = run_network(model, torch.from_numpy(x), fast=False).numpy()
        tol = TOLERANCE * max(1.0, float(np.max(np.abs(eager))))
        for fmt, path in paths.items():
            try:
                got = _run_exported(fmt, path, x)  # type: ignore[arg-type]
            except Exception as exc:  # runtime errors of onnxruntime / TorchScript
                raise UnetkitError(
                    f"{out}: the {fmt} weights failed on input shape {x.shape}: "
                    f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}; "
                    f"nothing was written"
                ) from None
            diff = float(np.max(np.abs(got - eager))) if got.shape == eager.shape else np.inf
            if not diff <= tol:
                raise UnetkitError(
                    f"{out}: the {fmt} weights differ from eager PyTorch by {diff:.3g} on input "
                    f"shape {x.shape} (tolerance {tol:.3g}); nothing was written"
                )
            worst = max(worst, diff)
    return worst


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def export_bioimageio(
    model: UNet,
    out: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    authors: Sequence[str] = (),
    license: str = "MIT",
    run_info: Mapping[str, Any] | None = None,
) -> BioimageioReport:
    """Write a bioimage.io model package for ``model`` to ``out`` (see the module doc).

    Args:
        model: the trained network (exported in eval mode).
        out: the zip to write.
        metadata: the model file's metadata (normalisation, classes, patch size).
        name: the package's name (default: from ``out``).
        authors: author names for the description.
        license: an SPDX licence id for the package.
        run_info: what the model card says about training: ``config`` (the run's resolved
            config as plain data), ``data`` (a summary) and ``metrics`` (the best validation
            row of ``metrics.csv``); each optional.

    Raises:
        UnetkitError: pre-processing the spec cannot express, weights that do not match eager
            PyTorch; nothing is written then.
    """
    out = Path(out)
    if out.is_dir():
        raise UnetkitError(f"--out {out}: is a folder; give the .zip file to write")
    meta = dict(metadata or {})
    steps = preprocessing(meta, model)  # refuses before anything is computed or written
    c = model.config
    low, step = size_rule(model)
    model.eval()
    size = test_size(model, meta)
    raw = sample_image(c.in_channels, size)
    x = apply_preprocessing(steps, raw)
    small = np.ascontiguousarray(x[(..., *[slice(0, low + step)] * c.spatial_dims)])
    expected = run_network(model, torch.from_numpy(x), fast=False).numpy()
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="unetkit-bioimageio-") as tmpdir:
        paths = _write_weights(model, torch.from_numpy(x), Path(tmpdir))
        worst = _check_weights(model, paths, [x, small], out)
        for path in paths.values():
            files[path.name] = path.read_bytes()
    files["test_input.npy"] = _npy(raw)
    files["test_output.npy"] = _npy(expected.astype(np.float32))
    files["cover.png"] = cover_png(raw[0], expected[0])
    title = name or out.stem.replace("_", " ").replace(".", " ").strip() or "unetkit model"
    files["README.md"] = model_card(title, model, meta, steps, run_info or {}).encode()
    rdf = _description(model, meta, steps, files, title, authors, license, run_info or {})
    files = {"rdf.yaml": yaml.safe_dump(rdf, sort_keys=False).encode(), **files}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_bytes(out, buf.getvalue())
    shapes = [tuple(x.shape), tuple(small.shape)]
    return BioimageioReport(path=out, rdf=rdf, max_abs_diff=worst, checked_shapes=shapes)


def _description(
    model: UNet,
    meta: Mapping[str, Any],
    steps: list[dict[str, Any]],
    files: Mapping[str, bytes],
    title: str,
    authors: Sequence[str],
    license: str,
    run_info: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``rdf.yaml`` content as plain data."""
    import dataclasses

    from unetkit.version import __version__

    c = model.config
    in_axes, out_axes = tensor_axes(model, meta.get("class_names"))

    def ref(member: str) -> dict[str, str]:
        return {"source": member, "sha256": _sha256(files[member])}

    torch_version = torch.__version__.split("+")[0]
    dims = f"{c.spatial_dims}D"
    return {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": title[:128],
        "description": (
            f"{dims} U-Net ({c.padding} padding, {len(c.widths)} levels) for semantic "
            f"segmentation into {max(2, c.out_channels)} classes, trained with unetkit"
        )[:1024],
        "authors": [{"name": a} for a in authors],
        "cite": [UNET_CITATION],
        "license": license,
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["unet", "segmentation", "unetkit", dims.lower(), "pytorch"],
        "inputs": [
            {
                "id": INPUT_ID,
                "description": "raw image, channels first",
                "axes": in_axes,
                "test_tensor": ref("test_input.npy"),
                "data": {"type": "float32"},
                "preprocessing": steps,
            }
        ],
        "outputs": [
            {
                "id": OUTPUT_ID,
                "description": (
                    "per-class logits; labels: argmax over channel"
                    if c.out_channels > 1
                    else "foreground logit; labels: logit > 0"
                ),
                "axes": out_axes,
                "test_tensor": ref("test_output.npy"),
                "data": {"type": "float32"},
            }
        ],
        "weights": {
            "torchscript": {**ref("weights.torchscript"), "pytorch_version": torch_version},
            "onnx": {**ref("weights.onnx"), "opset_version": OPSET, "parent": "torchscript"},
        },
        "config": {
            "unetkit": {
                "version": __version__,
                "model_config": dataclasses.asdict(c),
                "normalization": meta.get("normalization"),
                "ignore_index": meta.get("ignore_index"),
            }
        },
    }


__all__ = ["BioimageioReport", "export_bioimageio", "sample_image", "test_size"]
