"""TIFF: read with tifffile by the axes it reports; written as grey, RGB or a stack.

A multi-page TIFF is one image only when its pages share one size (a volume, a time series or
a channel stack); pages of different sizes (a pyramid, thumbnails, unrelated images) are an
error naming the file and the sizes, never a silent read of the first page.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from unetkit.errors import DataError
from unetkit.io.limits import check_pixels

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# (array, axis 0 is channels, default number of spatial dims)
Raw = tuple[np.ndarray, bool, int]


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's own log lines about a broken file; our DataError says it once."""
    logger, drop = logging.getLogger("tifffile"), _DropAll()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _check_one_size(path: Path, series: list) -> None:
    """Refuse a TIFF whose pages (image series) differ in size or pixel type."""
    if len(series) < 2:
        return
    shapes = ["x".join(str(int(n)) for n in s.shape) for s in series]
    types = {str(s.dtype) for s in series}
    if len(set(shapes)) > 1 or len(types) > 1:
        shown = ", ".join(shapes[:6]) + (f", ... ({len(shapes)} in all)" if len(shapes) > 6 else "")
        kinds = f" and pixel types {', '.join(sorted(types))}" if len(types) > 1 else ""
        raise DataError(
            f"{path}: multi-page TIFF whose pages differ: sizes {shown}{kinds}; unetkit reads "
            f"one image per file, so save each page as its own file (or pages of one size)"
        )


def read_tiff(path: Path, limit: int, spatial_dims: int | None) -> Raw:
    """``(array, has_channels, default spatial dims)`` of the file's one image series."""
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
        # Index every page first: tifffile's len() stops at a circular IFD chain, while the
        # lazy page iterator behind `series` loops on it for ever (a 267-byte file hangs it).
        len(tif.pages)
        if not tif.series:
            raise DataError(f"{path}: TIFF holds no image data; re-export the file")
        _check_one_size(path, tif.series)
        series = tif.series[0]
        axes = series.axes.upper()
        shape = tuple(int(s) for s in series.shape)
        if len(tif.series) > 1:  # equal pages written one by one: a stack of them
            axes, shape = "Q" + axes, (len(tif.series), *shape)
        channel_axes = [i for i, a in enumerate(axes) if a in "SC"]
        spatial_size = int(np.prod([s for i, s in enumerate(shape) if i not in channel_axes]))
        check_pixels(path, spatial_size, limit)
        if len(tif.series) > 1:
            arr = np.stack([s.asarray() for s in tif.series])
        else:
            arr = series.asarray()
    if len(channel_axes) > 1:
        # e.g. CYXS: fold a size-1 axis away, else we cannot tell which one is channels
        keep = [i for i in channel_axes if shape[i] > 1]
        if len(keep) > 1:
            raise DataError(
                f"{path}: TIFF has axes {axes} with two channel axes; save one channel axis"
            )
        drop = [i for i in channel_axes if i not in keep[:1]][: len(channel_axes) - 1]
        arr = arr.reshape([s for i, s in enumerate(shape) if i not in drop])
        axes = "".join(a for i, a in enumerate(axes) if i not in drop)
        channel_axes = [i for i, a in enumerate(axes) if a in "SC"]
    # squeeze size-1 non-channel, non-YX axes (e.g. a T or Q axis of length 1)
    squeeze = [i for i, a in enumerate(axes) if a not in "SCYX" and arr.shape[i] == 1]
    if squeeze:
        arr = arr.squeeze(axis=tuple(squeeze))
        axes = "".join(a for i, a in enumerate(axes) if i not in squeeze)
        channel_axes = [i for i, a in enumerate(axes) if a in "SC"]
    if channel_axes:
        arr = np.moveaxis(arr, channel_axes[0], 0)
        if arr.shape[0] == 1:
            arr = arr[0]
            return arr, False, arr.ndim
        return arr, True, arr.ndim - 1
    return arr, False, min(arr.ndim, 3) if spatial_dims is None else spatial_dims


def tiff_bytes(arr: np.ndarray, axes: str) -> bytes:
    """``arr`` with tifffile ``axes`` (e.g. ``"YX"``, ``"ZYX"``, ``"YXS"``) -> TIFF bytes."""
    import tifffile

    buf = io.BytesIO()
    if axes.endswith("S"):
        tifffile.imwrite(buf, arr, photometric="rgb")
    else:
        tifffile.imwrite(buf, arr, photometric="minisblack", metadata={"axes": axes})
    return buf.getvalue()
