"""Huge inputs of ``unetkit predict``: Zarr / OME-Zarr stores, and TIFFs with ``--blockwise``.

Such an input ``<stem>`` is predicted block by block (:mod:`unetkit.infer.blockwise`) into the
store ``OUT/<stem>.zarr`` (labels as an OME-Zarr ``labels/`` group, probabilities inside it on
request). The store is recorded in the output folder's manifest before it is created, like any
output; an unfinished store of the same model and settings is **resumed**, a finished one is
skipped, one of other settings is replaced only with ``--overwrite``, and a folder of that name
that unetkit did not write is never touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError
from unetkit.infer.block_resample import predict_blockwise_at_spacing
from unetkit.infer.blockwise import predict_blockwise
from unetkit.infer.distributed import Context
from unetkit.infer.lazy_image import TIFF_SUFFIXES, is_zarr, open_lazy
from unetkit.infer.normalization import Normalization
from unetkit.infer.output_folder import OutputFolder
from unetkit.infer.predictor import PredictOptions
from unetkit.model import UNet
from unetkit.train.resample import needs_resampling

STORE_SUFFIX = ".zarr"


def is_large(path: Path, blockwise: bool) -> bool:
    """Whether ``path`` is predicted block-wise: a Zarr store always, a TIFF with
    ``blockwise``."""
    return is_zarr(path) or (blockwise and path.suffix.lower() in TIFF_SUFFIXES)


def store_name(source: Path) -> str:
    """The output store's name in the output folder: ``<stem>.zarr``."""
    stem = source.name[: -len(source.suffix)] if source.suffix else source.name
    return f"{stem}{STORE_SUFFIX}"


def store_state(folder: OutputFolder, rel: str, digest: str, *, overwrite: bool) -> str:
    """``"new"``, ``"resume"`` or ``"replace"`` for the store ``rel`` in ``folder``.

    Raises:
        UnetkitError: a file or folder of that name that unetkit did not write; or a store of
            other settings without ``overwrite``.
    """
    found = folder.existing(rel)
    if found is None:
        return "new"
    owner = folder.owner(found.relative_to(folder.root).as_posix())
    if owner is None or not found.is_dir():
        raise UnetkitError(
            f"{found}: exists and was not written by unetkit predict (it is not recorded in "
            f"{folder.manifest}); unetkit never replaces it, --overwrite or not. Move it out of "
            f"the way or choose another --out folder"
        )
    if overwrite:
        return "replace"
    if owner != digest:
        raise UnetkitError(
            f"--out {folder.root}: {found.name} was predicted with another model or other "
            f"settings; use --overwrite to replace it, or choose another --out folder"
        )
    return "resume"


def remove_store(path: Path) -> None:
    """Delete a store unetkit wrote (recorded in the manifest), before predicting it again."""
    shutil.rmtree(path)


def predict_large_file(
    model: UNet,
    source: Path,
    dest: Path,
    *,
    options: PredictOptions,
    normalization: Normalization,
    tile_default: Sequence[int],
    identity: Mapping[str, Any],
    probabilities: bool,
    block: int | None,
    int8: Mapping[str, Any] | None,
    context: Context,
    before_write: Callable[[], None] | None = None,
    class_of_channel: Sequence[int] | None = None,
    target_spacing: Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
) -> int:
    """Predict one huge input into ``dest``; the number of blocks this process predicted.

    An image whose grid changes at the model's ``target_spacing`` (its spacing: ``spacing``,
    else the OME-Zarr scale) is predicted there and brought back block by block
    (:mod:`unetkit.infer.block_resample`).
    """
    common: dict[str, Any] = {
        "options": options,
        "normalization": normalization,
        "default_tile": tile_default,
        "block": block,
        "probabilities": probabilities,
        "identity": identity,
        "int8": int8,
        "context": context,
        "before_write": before_write,
        "class_of_channel": class_of_channel,
    }
    with open_lazy(source, model.config.spatial_dims) as image:
        sp = tuple(spacing) if spacing is not None else image.scale
        try:
            if target_spacing is not None and needs_resampling(image.spatial, sp, target_spacing):
                return predict_blockwise_at_spacing(
                    model, image, dest, spacing=sp or (), target=target_spacing, **common
                )
            return predict_blockwise(model, image, dest, **common)
        except ValueError as exc:
            raise UnetkitError(f"{source}: {exc}") from None
