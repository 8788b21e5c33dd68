"""``unetkit predict --instances``: instance label images and per-object tables for image files.

For an input ``<stem>.<ext>`` the outputs in ``OUT`` are:

* ``OUT/<stem>_instances.png``: uint16 object ids (0 = background) of a 2D image with at most
  65535 objects; ``OUT/<stem>_instances.tif`` for 3D volumes and for 2D images with more
  objects (uint16, or uint32 beyond 65535 objects);
* ``OUT/<stem>_objects.csv``: one row per object (:mod:`unetkit.instances.table`: id, class,
  area/volume, centroid, bounding box, mean intensity).

Each image is predicted whole through the tiled predictor and post-processed once on the
stitched probabilities (:func:`unetkit.infer.instances.predict_instances`), so objects cut by a
tile border keep one id. The output folder rules are those of ``unetkit predict``
(:mod:`unetkit.infer.output_folder`): files are recorded in the folder's manifest before they
are written, written atomically, skipped on a rerun unless ``overwrite``, and nothing is
written for an input whose prediction failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import DataError, UnetkitError
from unetkit.infer.files import prediction_identity
from unetkit.infer.inputs import find_inputs, input_folders
from unetkit.infer.instances import Fallback, predict_instances
from unetkit.infer.output_folder import OutputFolder, check_location, settings_digest
from unetkit.infer.predictor import PredictOptions
from unetkit.infer.spacing import input_spacing
from unetkit.instances.postprocess import InstanceParams
from unetkit.instances.spec import InstanceSpec
from unetkit.instances.table import object_table, object_table_csv
from unetkit.io.atomic import atomic_save_bytes
from unetkit.io.images import read_image
from unetkit.model import UNet

_UINT16_MAX = int(np.iinfo(np.uint16).max)


@dataclass(frozen=True)
class InstanceOutputs:
    """Where the outputs of one input go (``labels`` as planned; see :func:`labels_path`)."""

    labels: Path
    table: Path

    def all(self) -> list[Path]:
        """Every output."""
        return [self.labels, self.table]


@dataclass(frozen=True)
class InstanceFileResult:
    """One input: ``status`` ``"predicted"`` or ``"skipped"``, and its number of objects
    (``None`` when skipped)."""

    input: Path
    outputs: InstanceOutputs
    status: str
    objects: int | None = None


def labels_path(source: Path, out_dir: Path, spatial_dims: int, n_objects: int = 0) -> Path:
    """``<stem>_instances.png`` (2D, at most 65535 objects) or ``<stem>_instances.tif``."""
    png = spatial_dims == 2 and n_objects <= _UINT16_MAX
    return out_dir / f"{source.stem}_instances{'.png' if png else '.tif'}"


def instance_output_paths(source: Path, out_dir: Path, spatial_dims: int) -> InstanceOutputs:
    """The planned outputs of ``source`` (module doc)."""
    return InstanceOutputs(
        labels=labels_path(source, out_dir, spatial_dims),
        table=out_dir / f"{source.stem}_objects.csv",
    )


def label_image_bytes(labels: np.ndarray, suffix: str) -> bytes:
    """uint16/uint32 ids ``(*spatial)`` as PNG (2D, uint16) or TIFF (2D/3D) bytes."""
    from unetkit.io.png import png_bytes
    from unetkit.io.tiff import tiff_bytes

    arr = np.asarray(labels)
    top = int(arr.max(initial=0))
    dtype = np.uint16 if top <= _UINT16_MAX else np.uint32
    arr = arr.astype(dtype, copy=False)
    if suffix == ".png":
        if arr.ndim != 2 or dtype != np.uint16:
            raise ValueError(f"PNG holds 2D ids up to {_UINT16_MAX}, got {arr.shape} max {top}")
        return png_bytes(arr)
    return tiff_bytes(arr, "ZYX"[-arr.ndim :])


def check_instance_model(
    metadata: Mapping[str, Any], source: str, fallback: Fallback
) -> InstanceSpec | None:
    """The model's instance spec; refuse (one line) a model without one unless ``fallback``."""
    spec = InstanceSpec.from_metadata(dict(metadata), source)
    if spec is None and fallback == "none":
        raise UnetkitError(
            f"--instances: {source} was trained without an instance target, so it cannot "
            f"separate touching objects (they would come out as one); train it on data with "
            f"instances/ (or data.instance_target=boundary), or add --instances-fallback "
            f"components for the connected components of its class map"
        )
    return spec


def predict_instance_files(
    model: UNet,
    metadata: Mapping[str, Any],
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    options: PredictOptions | None = None,
    params: InstanceParams | None = None,
    fallback: Fallback = "none",
    overwrite: bool = False,
    source: str = "the model",
    on_result: Callable[[InstanceFileResult], None] | None = None,
    spacing: Sequence[float] | None = None,
) -> list[InstanceFileResult]:
    """Instance label image and object table of every input file (module doc).

    Args:
        model, metadata: the network and its trained-model metadata (instance spec,
            normalisation); ``source`` names it in messages.
        inputs: files and/or folders; ``out_dir``: the output folder.
        options: tiling, overlap, TTA, batch size, precision.
        params: post-processing parameters instead of the model's tuned ones.
        fallback: ``"components"`` accepts a model without an instance target.
        overwrite: predict again where all outputs exist.
        on_result: called after each input.
        spacing: the voxel spacing of inputs without one (NIfTI headers carry theirs); a model
            with a ``target_spacing`` predicts them resampled there and the ids are made on
            the input's own grid (:func:`unetkit.infer.instances.predict_instances`).

    Raises:
        UnetkitError: a model without an instance target (no ``fallback``), or more objects
            than a 32-bit label image holds; nothing is written for that input.
    """
    check_instance_model(metadata, source, fallback)
    dims = model.config.spatial_dims
    if dims not in (2, 3):
        raise UnetkitError(f"--instances: needs a 2D or 3D model, {source} is {dims}D")
    files = find_inputs(inputs)
    out = Path(out_dir)
    check_location(out, files, input_folders(inputs))
    folder = OutputFolder.claim(out)
    try:
        opts = options or PredictOptions()
        plans = [(f, instance_output_paths(f, out, dims)) for f in files]
        identity = {
            **prediction_identity(model, opts),
            "instances": None if params is None else params.to_dict(),
            "fallback": fallback,
        }
        if spacing is not None:  # outputs at another declared spacing are other outputs
            identity["spacing"] = [float(v) for v in spacing]
        digest = settings_digest(identity)
        names = {src: [p.relative_to(out).as_posix() for p in paths.all()] for src, paths in plans}
        done = {src: folder.check(names[src], digest, overwrite=overwrite) for src in names}
        folder.remove_own_temporaries()
        results: list[InstanceFileResult] = []
        for src, paths in plans:
            if done[src]:
                result = InstanceFileResult(src, paths, "skipped")
            else:
                sp = input_spacing(src, dims, spacing)
                labels, table = _predict_one(model, metadata, src, dims, opts, params, fallback, sp)
                top = int(labels.max(initial=0))
                actual = InstanceOutputs(labels_path(src, out, dims, top), paths.table)
                rels = [p.relative_to(out).as_posix() for p in actual.all()]
                folder.record(rels, digest, identity)
                atomic_save_bytes(actual.table, object_table_csv(table).encode("utf-8"))
                atomic_save_bytes(actual.labels, label_image_bytes(labels, actual.labels.suffix))
                result = InstanceFileResult(src, actual, "predicted", len(table["id"]))
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        folder.close()
    return results


def _predict_one(
    model: UNet,
    metadata: Mapping[str, Any],
    src: Path,
    dims: int,
    opts: PredictOptions,
    params: InstanceParams | None,
    fallback: Fallback,
    spacing: Sequence[float] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    try:
        image = read_image(src, spatial_dims=dims)
    except DataError as exc:
        reason = str(exc).split("; pass spatial_dims")[0]
        if reason == str(exc):
            raise
        raise DataError(
            f"{reason}; this model is {dims}D, so it cannot predict this file"
        ) from None
    try:
        pred = predict_instances(
            model,
            image,
            params=params,
            fallback=fallback,
            tile=opts.tile,
            overlap=opts.overlap,
            tta=opts.tta,
            batch_size=opts.batch_size,
            metadata=metadata,
            precision=opts.precision,
            spacing=spacing,
        )
    except ValueError as exc:
        raise DataError(f"{src}: {exc}") from None
    except UnetkitError as exc:
        raise UnetkitError(f"{src}: {exc}") from None
    table = object_table(pred.labels, image=image, class_map=pred.class_map)
    return pred.labels, table
