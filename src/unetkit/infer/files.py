"""Predict image files: inputs from files or folders, outputs beside each other in one folder.

For an input ``<stem>.<ext>`` the outputs in ``OUT`` are:

* ``OUT/<stem>.<ext>``: the label map, in the input's format (PNG/TIFF/NPY);
* ``OUT/probabilities/<stem>.npy``: ``(num_classes, *spatial)`` float32, with
  ``save_probabilities``;
* ``OUT/overlays/<stem>.png``: the image with the labels blended in colour, with ``overlay``
  (2D images; the middle slice of a 3D volume; not for 1D signals).

Every file is written atomically (temporary file, then rename), so an existing output is a
finished one: a rerun skips an input whose requested outputs all exist, unless ``overwrite``.
Outputs go only into a folder unetkit owns and replace only files it wrote
(:mod:`unetkit.infer.output_folder`); the output folder may not lie inside an input folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import DataError, UnetkitError
from unetkit.infer import large_files
from unetkit.infer.batched import predict_group
from unetkit.infer.distributed import Context
from unetkit.infer.inputs import find_inputs, input_folders
from unetkit.infer.normalization import Normalization
from unetkit.infer.output_folder import (
    OutputFolder,
    check_location,
    settings_digest,
)
from unetkit.infer.overlay import PALETTE, overlay_image, write_overlay
from unetkit.infer.pipeline import run_pipeline
from unetkit.infer.predictor import (
    Prediction,
    PredictOptions,
    channel_classes,
    default_tile,
    predict_array,
)
from unetkit.infer.spacing import input_spacing, model_target_spacing, predict_at_spacing
from unetkit.io.atomic import atomic_write
from unetkit.io.images import read_image, write_image, write_mask
from unetkit.io.nifti import is_nifti_name
from unetkit.model import UNet

PROBABILITIES_DIR = "probabilities"
OVERLAYS_DIR = "overlays"
__all__ = ["PALETTE", "overlay_image", "predict_file", "predict_files"]


@dataclass(frozen=True)
class OutputPaths:
    """Where the outputs of one input go."""

    labels: Path
    probabilities: Path | None
    overlay: Path | None

    def all(self) -> list[Path]:
        """Every requested output."""
        return [p for p in (self.labels, self.probabilities, self.overlay) if p is not None]


@dataclass(frozen=True)
class FileResult:
    """What happened to one input: ``status`` is ``"predicted"`` or ``"skipped"``."""

    input: Path
    outputs: OutputPaths
    status: str


def output_paths(
    source: Path, out_dir: Path, *, save_probabilities: bool, overlay: bool, spatial_dims: int
) -> OutputPaths:
    """The outputs of ``source`` in ``out_dir`` (see the module doc)."""
    labels = out_dir / f"{source.stem}{source.suffix.lower()}"
    if labels.resolve() == source.resolve():
        raise UnetkitError(
            f"{source}: the label output would overwrite the input; choose another --output"
        )
    probs_name = f"{source.stem}.npy"
    if is_nifti_name(source):  # NIfTI in, NIfTI out: on the input's grid (io.nifti)
        probs_name = labels.name
    probs = out_dir / PROBABILITIES_DIR / probs_name if save_probabilities else None
    ov = out_dir / OVERLAYS_DIR / f"{source.stem}.png" if overlay and spatial_dims >= 2 else None
    return OutputPaths(labels=labels, probabilities=probs, overlay=ov)


def _write_probabilities(path: Path, probabilities: np.ndarray, source: Path) -> None:
    if is_nifti_name(path):
        write_image(path, probabilities, like=source)
        return
    with atomic_write(path, "wb") as fh:
        np.save(fh, probabilities, allow_pickle=False)


def prediction_identity(model: UNet, options: PredictOptions) -> dict[str, Any]:
    """What makes outputs comparable: the model's weights and config, and the options."""
    from unetkit.modelfile import tensors_digest

    return {
        "model_sha256": tensors_digest(model.state_dict()),
        "tile": repr(options.tile),
        "overlap": options.overlap if options.overlap == "auto" else float(options.overlap),
        "tta": bool(options.tta),
        "precision": options.precision,
    }


def predict_file(
    model: UNet,
    source: Path,
    outputs: OutputPaths,
    *,
    options: PredictOptions,
    normalization: Normalization,
    tile_default: Sequence[int],
    progress: bool = False,
    int8: Mapping[str, Any] | None = None,
    before_write: Callable[[], None] | None = None,
    class_of_channel: Sequence[int] | None = None,
) -> None:
    """Predict one file and write its outputs (probabilities and overlay first, labels last).

    ``int8``: the model's int8 calibration, used as ``options.precision`` says.
    ``before_write``: called once the prediction succeeded, before the first output is written
    (the output folder records the names there), so a file that cannot be predicted leaves
    nothing behind."""
    image = read_input(source, model.config.spatial_dims)
    try:
        result = predict_array(
            model,
            image,
            options=options,
            normalization=normalization,
            default_tile=tile_default,
            keep_probabilities=outputs.probabilities is not None,
            label_dtype=_label_dtype(model),
            progress=progress,
            int8=int8,
            class_of_channel=class_of_channel,
        )
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None
    if before_write is not None:
        before_write()
    write_outputs(source, outputs, image, result)


def _label_dtype(model: UNet) -> type:
    return np.uint8 if model.config.out_channels <= 256 else np.int64


def read_input(source: Path, dims: int) -> np.ndarray:
    """Decode one input for a ``dims``-D model: ``(C, *spatial)``; errors name the file."""
    try:
        return read_image(source, spatial_dims=dims, keep_integers=True)  # float per tile
    except DataError as exc:
        reason = str(exc).split("; pass spatial_dims")[0]
        if reason == str(exc):
            raise
        raise DataError(
            f"{reason}; this model is {dims}D, so it cannot predict this file"
        ) from None


def write_outputs(
    source: Path, outputs: OutputPaths, image: np.ndarray, result: Prediction
) -> None:
    """Write one input's outputs: probabilities and overlay first, labels last (NIfTI outputs
    take ``source``'s affine and header)."""
    if outputs.probabilities is not None and result.probabilities is not None:
        _write_probabilities(outputs.probabilities, result.probabilities, source)
    if outputs.overlay is not None:
        write_overlay(outputs.overlay, image, result.labels)
    del image
    write_mask(outputs.labels, result.labels, like=source)


def predict_files(
    model: UNet,
    metadata: Mapping[str, Any],
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    options: PredictOptions | None = None,
    save_probabilities: bool = False,
    overlay: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    on_result: Callable[[FileResult], None] | None = None,
    blockwise: bool = False,
    block: int | None = None,
    context: Context | None = None,
    spacing: Sequence[float] | None = None,
) -> list[FileResult]:
    """Predict every input file into ``out_dir`` (see the module doc).

    Args:
        model: the network; ``metadata``: its trained-model metadata (normalisation, patch size).
        inputs: files and/or folders.
        out_dir: output folder (created).
        options: tiling, overlap, TTA, batch size.
        save_probabilities, overlay: extra outputs.
        overwrite: predict again even where all outputs exist.
        progress: progress bars over images and tiles (stderr).
        on_result: called after each input.
        blockwise: predict TIFF inputs block by block into ``OUT/<stem>.zarr`` (Zarr inputs
            always are; :mod:`unetkit.infer.large_files`).
        block: block edge in output pixels for those (``None``: the default).
        context: this process's share under ``torchrun`` (:mod:`unetkit.infer.distributed`):
            files are split among the processes, the blocks of each huge image too.
        spacing: the voxel spacing of the inputs that do not carry one (NIfTI headers do),
            for a model with a ``target_spacing`` (:mod:`unetkit.infer.spacing`).

    Returns:
        The results of the inputs this process handled.
    """
    ctx = context or Context()
    files = find_inputs(inputs)
    out = Path(out_dir)
    check_location(out, files, input_folders(inputs))
    folder = OutputFolder.claim(out)
    try:
        opts = options or PredictOptions()
        norm = Normalization.from_metadata(metadata.get("normalization"))
        tile_default = default_tile(model.config.spatial_dims, metadata)
        identity = prediction_identity(model, opts)
        if spacing is not None:  # outputs at another declared spacing are other outputs
            identity["spacing"] = [float(v) for v in spacing]
        digest = settings_digest(identity)
        large = [f for f in files if large_files.is_large(f, blockwise)]
        small = [f for f in files if f not in large]
        plans = [
            (
                f,
                output_paths(
                    f,
                    out,
                    save_probabilities=save_probabilities,
                    overlay=overlay,
                    spatial_dims=model.config.spatial_dims,
                ),
            )
            for f in small
        ]
        names = {src: [p.relative_to(out).as_posix() for p in paths.all()] for src, paths in plans}
        done = {src: folder.check(names[src], digest, overwrite=overwrite) for src in names}
        stores = {f: large_files.store_name(f) for f in large}
        states = {
            f: large_files.store_state(folder, rel, digest, overwrite=overwrite)
            for f, rel in stores.items()
        }
        ctx.barrier()  # every process has read the manifest
        if ctx.world > 1 and ctx.is_main:  # record every output once, before any is written
            pending = [n for src in names if not done[src] for n in names[src]]
            folder.record([*pending, *stores.values()], digest, identity)
        if ctx.is_main:
            folder.remove_own_temporaries()
            for f, state in states.items():
                if state == "replace":
                    large_files.remove_store(out / stores[f])
        ctx.barrier()
        from tqdm.auto import tqdm

        results: list[FileResult] = []
        shared: dict[str, Any] = dict(  # what every image's prediction is given
            options=opts,
            normalization=norm,
            tile_default=tile_default,
            int8=metadata.get("int8"),
            class_of_channel=channel_classes(metadata),
        )
        for f in large:

            def record(rel: str = stores[f]) -> None:
                if ctx.world == 1:
                    folder.record([rel], digest, identity)

            blocks = large_files.predict_large_file(
                model,
                f,
                out / stores[f],
                **shared,
                identity=identity,
                probabilities=save_probabilities,
                block=block,
                context=ctx,
                before_write=record,
                target_spacing=model_target_spacing(metadata),
                spacing=spacing,
            )
            paths = OutputPaths(out / stores[f], None, None)
            result = FileResult(f, paths, "predicted" if blocks or ctx.world > 1 else "skipped")
            if ctx.is_main:  # every process worked on it; one reports it
                results.append(result)
                if on_result is not None:
                    on_result(result)
        dims = model.config.spatial_dims

        def claim(items: list[tuple[Path, OutputPaths]]) -> None:
            if ctx.world == 1:
                folder.record([n for source, _ in items for n in names[source]], digest, identity)
            for _, paths in items:
                for p in paths.all():
                    p.parent.mkdir(parents=True, exist_ok=True)

        def plain(sources: list[Path], images: list[np.ndarray], probs: bool) -> list[Prediction]:
            return predict_group(
                model,
                sources,
                images,
                label_dtype=_label_dtype(model),
                **shared,
                probabilities=probs,
                progress=progress,
            )

        target = model_target_spacing(metadata)

        def predict(sources: list[Path], images: list[np.ndarray]) -> list[Prediction]:
            if target is None:
                return plain(sources, images, save_probabilities)
            return predict_at_spacing(  # inputs of known spacing at the model's (infer.spacing)
                plain,
                sources,
                images,
                [input_spacing(s, dims, spacing) for s in sources],
                target,
                probabilities=save_probabilities,
                class_of_channel=channel_classes(metadata),
            )

        mine = ctx.share(plans)
        with tqdm(total=len(mine), disable=not progress, unit="image", desc="images") as bar:

            def emit(source: Path, paths: OutputPaths, status: str) -> None:
                result = FileResult(source, paths, status)
                results.append(result)
                bar.update(1)
                if on_result is not None:
                    on_result(result)

            run_pipeline(
                [(src, paths, done[src]) for src, paths in mine],
                group_size=opts.batch_size,
                read=lambda source: read_input(source, dims),
                predict=predict,
                claim=claim,
                write=write_outputs,
                emit=emit,
            )
        ctx.barrier()
    finally:
        folder.close()
    return results
