"""`unetkit predict` on huge inputs (Zarr, --blockwise TIFF): refused in one line, nothing
written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from builders import _with_model
from catalogue_kit import CliCase

LARGE = ("predict", "--model", "m.safetensors", "--input", "big.zarr", "--out", "out")


def _zarr(shape: tuple[int, int] = (32, 32), drop_chunk: bool = False) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        import zarr

        z = zarr.open_array(str(tmp / "big.zarr"), mode="w", shape=shape, chunks=(16, 16),
                            dtype=np.uint8)
        z[...] = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) % 251
        if drop_chunk:
            chunk = next(p for p in sorted((tmp / "big.zarr").rglob("*")) if p.name == "1")
            chunk.unlink()

    return build


def _predicted_then_resized(tmp: Path) -> None:
    """A finished prediction of a 32x32 ``big.zarr``, whose input then grew to 32x48."""
    import shutil

    from unetkit.infer.files import predict_files
    from unetkit.modelfile import load_with_metadata

    _zarr()(tmp)
    model, metadata = load_with_metadata(tmp / "m.safetensors")
    predict_files(model, metadata, [tmp / "big.zarr"], tmp / "out")  # the CLI's defaults
    shutil.rmtree(tmp / "big.zarr")
    _zarr((32, 48))(tmp)


def _foreign_store(tmp: Path) -> None:
    _zarr()(tmp)
    (tmp / "out" / "big.zarr").mkdir(parents=True)
    (tmp / "out" / "big.zarr" / "notes.txt").write_text("mine")
    manifest = {"written_by": "unetkit predict", "format": 2, "settings": {}, "outputs": {}}
    (tmp / "out" / ".unetkit-predict.json").write_text(json.dumps(manifest))


CASES: list[CliCase] = [
    CliCase(
        "cli predict",
        "a Zarr input with missing chunks",
        _with_model(*LARGE, then=_zarr(drop_chunk=True)),
        ("big.zarr: 1 of 4 Zarr chunks are missing", "Write the missing chunks"),
    ),
    CliCase(
        "cli predict",
        "an output Zarr store that exists with another shape",
        _with_model(*LARGE, then=_predicted_then_resized),
        ("out/big.zarr: exists with labels of shape (32, 32), but this image needs (32, 48)",
         "--overwrite"),
    ),
    CliCase(
        "cli predict",
        "an output Zarr store name taken by a folder unetkit did not write",
        _with_model(*LARGE, then=_foreign_store),
        ("out/big.zarr: exists and was not written by unetkit predict", "--overwrite or not"),
    ),
    CliCase(
        "cli predict",
        "--block not a positive size",
        _with_model(*LARGE, "--block", "0", then=_zarr()),
        ("--block: expected a positive number of pixels, got 0",),
    ),
]
