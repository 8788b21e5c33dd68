"""The Zarr store that block-wise prediction writes, and resumes.

Layout (Zarr format 2, OME-NGFF 0.4 ``labels``, so the ``labels/`` group can be copied into the
source OME-Zarr image and viewers such as napari show it over the image)::

    OUT.zarr/
      .zattrs                   {"unetkit": {written_by, identity, spatial, block, normalization}}
      labels/.zattrs            {"labels": ["prediction"]}
      labels/prediction/.zattrs {"image-label": ..., "multiscales": [... one level "0" ...]}
      labels/prediction/0       (*spatial) integer labels, one chunk per block
      probabilities             (K, *spatial) float32, one chunk per block (on request)
      blocks_done               (num_blocks,) uint8, one chunk per flag: 1 = block written,
                                2 = summed but waiting for another process's overhang
      scratch/                  while unfinished: the overhangs carried between blocks and the
                                waiting blocks' sums (.npy files), each removed once the block
                                it goes into is written (the folder, once all are)

A block's flag is set after its labels (and probabilities) and the overhang it carries to its
neighbours are written, so a killed run resumes where it stopped, redoing at most the blocks it
was writing. Blocks are disjoint sets of chunks and every scratch file has one writer, so
processes writing different blocks never touch the same file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import DataError
from unetkit.infer.lazy_image import _zarr

WRITTEN_BY = "unetkit predict"
LABEL_NAME = "prediction"
LABELS_PATH = f"labels/{LABEL_NAME}/0"
PROBABILITIES_PATH = "probabilities"
DONE_PATH = "blocks_done"
SCRATCH = "scratch"
DONE, WAITING = 1, 2


def _create(group: Any, name: str, **kwargs: Any) -> Any:
    """``create_array`` (zarr 3) or ``create_dataset`` (zarr 2)."""
    make = getattr(group, "create_array", None) or group.create_dataset
    return make(name, **kwargs)


@dataclass
class BlockStore:
    """An open output store (see the module doc)."""

    path: Path
    labels: Any
    probabilities: Any | None
    done: Any
    attrs: dict[str, Any]

    def states(self) -> np.ndarray:
        """``(num_blocks,)`` uint8: 0 pending, :data:`DONE` written, :data:`WAITING` summed."""
        return np.asarray(self.done[:]).astype(np.uint8)

    def finished(self) -> np.ndarray:
        """``(num_blocks,)`` bool: which blocks are written."""
        return self.states() == DONE

    def mark(self, index: int, state: int = DONE) -> None:
        """Record block ``index`` as written (after its arrays were), or as ``WAITING``."""
        self.done[index] = state

    def save(self, name: str, array: np.ndarray) -> None:
        """Write a scratch array (atomically: a killed write leaves no half file)."""
        folder = self.path / SCRATCH
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.npy"
        # contiguous first: np.save writes a strided view element-chunk by chunk, 2-10x slower
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, folder / f"{name}.npy")

    def load(self, name: str) -> np.ndarray | None:
        """A scratch array :meth:`save` wrote, or ``None``."""
        f = self.path / SCRATCH / f"{name}.npy"
        return np.load(f, allow_pickle=False) if f.exists() else None

    def remove(self, names: Sequence[str]) -> None:
        """Remove the scratch arrays ``names`` that exist (those no unwritten block needs)."""
        for name in names:
            (self.path / SCRATCH / f"{name}.npy").unlink(missing_ok=True)

    def clear_scratch(self) -> None:
        """Remove the scratch files (once every block is written)."""
        shutil.rmtree(self.path / SCRATCH, ignore_errors=True)

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        spatial: Sequence[int],
        chunks: Sequence[int],
        label_dtype: np.dtype,
        num_blocks: int,
        probability_channels: int | None,
        attrs: Mapping[str, Any],
        scale: Sequence[float] | None = None,
    ) -> BlockStore:
        """Create the store's metadata (no pixel data is written; every block is pending)."""
        zarr = _zarr()
        d = len(spatial)
        root = zarr.open_group(str(path), mode="w-", zarr_format=2)
        root.attrs["unetkit"] = dict(attrs)
        labels_group = root.require_group("labels")
        labels_group.attrs["labels"] = [LABEL_NAME]
        label = labels_group.require_group(LABEL_NAME)
        names = "zyx"[-d:] if d <= 3 else None
        axes = [{"name": n, "type": "space"} for n in names] if names else []
        label.attrs["image-label"] = {"version": "0.4", "source": {"image": "../../"}}
        label.attrs["multiscales"] = [
            {
                "version": "0.4",
                "name": LABEL_NAME,
                "axes": axes,
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": list(scale or [1.0] * d)}
                        ],
                    }
                ],
            }
        ]
        shape, chunk = tuple(int(n) for n in spatial), tuple(int(c) for c in chunks)
        labels = _create(label, "0", shape=shape, chunks=chunk, dtype=label_dtype, fill_value=0)
        probs = None
        if probability_channels is not None:
            k = int(probability_channels)
            probs = _create(
                root,
                PROBABILITIES_PATH,
                shape=(k, *shape),
                chunks=(k, *chunk),
                dtype=np.float32,
                fill_value=0.0,
            )
        done = _create(
            root, DONE_PATH, shape=(num_blocks,), chunks=(1,), dtype=np.uint8, fill_value=0
        )
        return cls(path, labels, probs, done, dict(attrs))

    @classmethod
    def resume(
        cls,
        path: Path,
        identity: Mapping[str, Any],
        *,
        spatial: Sequence[int],
        probabilities: bool,
    ) -> BlockStore:
        """:meth:`open`, for a run that must be the one that wrote it (same ``identity``).

        Raises:
            DataError: as :meth:`open`, or the store was made by another model or settings.
        """
        store = cls.open(path, spatial=spatial, probabilities=probabilities)
        if store.attrs.get("identity") != identity:
            raise DataError(
                f"{path}: was predicted with another model or other settings; use --overwrite "
                f"to replace it, or choose another output"
            )
        return store

    @classmethod
    def open(cls, path: Path, *, spatial: Sequence[int], probabilities: bool) -> BlockStore:
        """Open a store an earlier run wrote, to resume it.

        Raises:
            DataError: it is not a store of unetkit predict, or it has another shape.
        """
        zarr = _zarr()
        try:
            root = zarr.open_group(str(path), mode="r+")
            attrs = dict(root.attrs.get("unetkit") or {})
            labels = root[LABELS_PATH]
            done = root[DONE_PATH]
        except Exception:
            attrs, labels, done = {}, None, None
        if attrs.get("written_by") != WRITTEN_BY or labels is None:
            raise DataError(
                f"{path}: exists and is not a store written by unetkit predict; unetkit never "
                f"replaces it. Move it away or choose another output"
            )
        want = tuple(int(n) for n in spatial)
        if tuple(labels.shape) != want:
            raise DataError(
                f"{path}: exists with labels of shape {tuple(labels.shape)}, but this image "
                f"needs {want}; use --overwrite to replace it, or choose another output"
            )
        probs = root.get(PROBABILITIES_PATH, None)
        if probabilities and probs is None:
            raise DataError(
                f"{path}: was written without probabilities; use --overwrite to predict it "
                f"again with them, or choose another output"
            )
        return cls(path, labels, probs, done, attrs)
