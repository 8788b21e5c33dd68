"""Prediction with a restoration model (``task=restore``): images in, restored images out.

The network's output is mapped back to the input's own intensity units with the numbers that
normalised the input (:func:`unetkit.data.restoration.target_stats`), the inverse of what
training did to the targets. Tiles follow :func:`unetkit.infer.tiling.plan_tiles` and are
blended with their Gaussian weights (same padding) or stitched (valid padding), so there are
no seams; the whole output is held in memory (it is the size of the image).

Files: ``OUT/<stem>.tif`` as float32 (``.npy`` for 1D signals), or with ``dtype="input"`` in
the input's own format and pixel type (values rounded and clipped to its range). Outputs go
only into a folder unetkit owns and replace only files it wrote, as ``predict`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from unetkit.data.restoration import target_stats
from unetkit.errors import DataError, UnetkitError
from unetkit.infer import tta as tta_mod
from unetkit.infer.engine import inference_network, run_network
from unetkit.infer.files import FileResult, OutputPaths
from unetkit.infer.inputs import find_inputs, input_folders
from unetkit.infer.normalization import Normalization
from unetkit.infer.output_folder import OutputFolder, check_location, settings_digest
from unetkit.infer.predictor import PredictOptions, as_image, default_tile, extract_tile
from unetkit.infer.resampled import model_target_spacing, run_at_spacing
from unetkit.infer.spacing import input_spacing
from unetkit.infer.tiling import plan_tiles
from unetkit.io.atomic import atomic_write
from unetkit.io.images import read_image, stored_dtype
from unetkit.io.npy import npy_bytes
from unetkit.io.tiff import tiff_bytes
from unetkit.memory import check_predict
from unetkit.model import UNet

OutputType = Literal["float32", "input"]


def is_restore_model(metadata: Mapping[str, Any]) -> bool:
    """Whether a model file's metadata says it restores images."""
    return metadata.get("task") == "restore"


def restore_array(
    model: UNet,
    image: np.ndarray,
    *,
    options: PredictOptions | None = None,
    normalization: Normalization | None = None,
    default_tile: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Restore one image: ``(C_in, *S)`` raw -> ``(C_out, *S)`` float32 in the input's units.

    Args: as :func:`unetkit.infer.predictor.predict_array` (int8 is not used: its calibration
    is checked on label maps).
    """
    opts = options or PredictOptions()
    arr = as_image(model, image)
    spatial = tuple(int(n) for n in arr.shape[1:])
    plan = plan_tiles(model.config, spatial, opts.tile, opts.overlap, default_tile)
    norm = (normalization or Normalization()).resolve(arr)
    c_out = int(model.config.out_channels)
    device = next(iter(model.parameters()), torch.empty(0)).device
    check_predict(
        model.config, plan.tile_in, min(opts.batch_size, plan.num_tiles), device=str(device)
    )
    precision = "fp32" if opts.precision in ("auto", "int8") else opts.precision
    runner = inference_network(model, precision, None)
    transforms = tta_mod.transforms(model.config.spatial_dims, opts.tta, opts.tta_flips)
    acc = np.zeros((c_out, *spatial), dtype=np.float32)
    tiles = [t for _row, row_tiles in plan.rows() for t in row_tiles]
    for i in range(0, len(tiles), opts.batch_size):
        chunk = tiles[i : i + opts.batch_size]
        x = norm.apply(np.stack([extract_tile(arr, plan, t) for t in chunk]), channel_axis=1)
        y = tta_mod.averaged(
            lambda b: run_network(runner, b, fast=False),
            torch.from_numpy(x).to(device),
            transforms,
        )
        y = y.float().cpu().numpy() * plan.batch_weights(chunk)  # (B, C_out, *tile_out)
        for yi, starts in zip(y, chunk, strict=True):
            dst, src = [slice(None)], [slice(None)]
            for a, s in zip(plan.axes, starts, strict=True):
                n = min(a.tile_out, a.size - s)
                dst.append(slice(s, s + n))
                src.append(slice(0, n))
            acc[tuple(dst)] += yi[tuple(src)]
    weight = np.ones((), dtype=np.float32)
    for a in plan.axes:
        weight = weight[..., None] * a.weight_sum().astype(np.float32)
    acc /= weight
    mean, std = target_stats(norm.mean, norm.std, c_out)
    shape = (-1,) + (1,) * len(spatial)
    acc *= std.astype(np.float32).reshape(shape)
    acc += mean.astype(np.float32).reshape(shape)
    return acc


def _as_input_type(restored: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(restored), info.min, info.max).astype(dtype)
    return restored.astype(dtype)


def write_restored(path: Path, restored: np.ndarray, dtype: np.dtype | None = None) -> None:
    """Write ``(C, *S)`` atomically: ``.tif`` (2D/3D) or ``.npy``; ``.png`` for 8/16-bit 2D.

    ``dtype``: store in this pixel type (rounded and clipped for integers), else float32.
    """
    from unetkit.io.png import png_bytes

    arr = restored if dtype is None else _as_input_type(restored, np.dtype(dtype))
    suffix = path.suffix.lower()
    sd = arr.ndim - 1
    if suffix == ".npy":
        payload = npy_bytes(arr[0] if arr.shape[0] == 1 else arr)
    elif suffix == ".png":
        payload = png_bytes(arr[0] if arr.shape[0] == 1 else arr)
    else:
        axes = "ZYX"[-sd:]
        payload = tiff_bytes(arr[0], axes) if arr.shape[0] == 1 else tiff_bytes(arr, "C" + axes)
    with atomic_write(path, "wb") as fh:
        fh.write(payload)


def _output_path(source: Path, out: Path, output: OutputType, spatial_dims: int) -> Path:
    float_suffix = ".npy" if spatial_dims == 1 else ".tif"
    suffix = source.suffix.lower() if output == "input" else float_suffix
    path = out / f"{source.stem}{suffix}"
    if path.resolve() == source.resolve():
        raise UnetkitError(f"{source}: the output would overwrite the input; choose another --out")
    return path


def restore_files(
    model: UNet,
    metadata: Mapping[str, Any],
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    options: PredictOptions | None = None,
    output: OutputType = "float32",
    overwrite: bool = False,
    on_result: Callable[[FileResult], None] | None = None,
    spacing: Sequence[float] | None = None,
) -> list[FileResult]:
    """Restore every input file into ``out_dir`` (see the module doc); reruns skip finished
    outputs unless ``overwrite``. A model with a ``target_spacing`` restores an input of known
    spacing (its NIfTI header, else ``spacing``) resampled there, and the restored image comes
    back on the input's own grid (:func:`unetkit.infer.resampled.run_at_spacing`)."""
    files = find_inputs(inputs)
    out = Path(out_dir)
    check_location(out, files, input_folders(inputs))
    folder = OutputFolder.claim(out)
    try:
        opts = options or PredictOptions()
        dims = model.config.spatial_dims
        norm = Normalization.from_metadata(metadata.get("normalization"))
        tile_default = default_tile(dims, metadata)
        plans = [(f, _output_path(f, out, output, dims)) for f in files]
        from unetkit.infer.files import prediction_identity

        identity = {**prediction_identity(model, opts), "restore_output": output}
        if spacing is not None:  # outputs at another declared spacing are other outputs
            identity["spacing"] = [float(v) for v in spacing]
        target = model_target_spacing(metadata)
        digest = settings_digest(identity)
        names = {src: [p.relative_to(out).as_posix()] for src, p in plans}
        done = {src: folder.check(names[src], digest, overwrite=overwrite) for src in names}
        folder.remove_own_temporaries()
        results = []
        for source, path in plans:
            status = "skipped"
            if not done[source]:
                try:
                    image = as_image(model, read_image(source, spatial_dims=dims))

                    def run(x: np.ndarray) -> np.ndarray:
                        return restore_array(
                            model, x, options=opts, normalization=norm, default_tile=tile_default
                        )

                    sp = input_spacing(source, dims, spacing)
                    restored = run_at_spacing(run, image, sp, target)
                    if restored is None:
                        restored = run(image)
                except ValueError as exc:
                    raise DataError(f"{source}: {exc}") from None
                folder.record(names[source], digest, identity)
                write_restored(path, restored, stored_dtype(source) if output == "input" else None)
                status = "predicted"
            result = FileResult(source, OutputPaths(path, None, None), status)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        folder.close()
    return results
