"""Images read lazily, region by region: Zarr arrays, OME-Zarr images and large TIFFs.

:func:`open_lazy` returns a :class:`LazyImage` whose :meth:`LazyImage.read` decodes only the
chunks (TIFF tiles or strips) that a region touches, so prediction of an image far larger than
memory reads it block by block (:mod:`unetkit.infer.blockwise`). Sources:

* a **Zarr array** (a folder ``*.zarr`` holding one array): ``(*spatial)`` is one channel,
  ``(C, *spatial)`` has channels first (the ``.npy`` rule of :mod:`unetkit.io.images`);
* an **OME-Zarr image** (a Zarr group with ``multiscales`` metadata, OME-NGFF 0.4 or 0.5): its
  full-resolution level, axes by name (``c`` is channels; a ``t`` axis of length 1 is dropped);
* a **TIFF** through tifffile's Zarr view (``aszarr``): its first series at full resolution,
  axes as tifffile reports them (``S``/``C`` are channels).

A Zarr chunk that was never written reads as the fill value, silently; :func:`open_lazy`
refuses an array with missing chunks (:class:`unetkit.errors.DataError`, one line). Needs the
``large`` extra (``zarr``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import DataError

ZARR_SUFFIX = ".zarr"
TIFF_SUFFIXES = (".tif", ".tiff")
_CHANNEL_AXES = {"c", "s"}


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a Zarr store folder (v2 or v3 metadata, or a ``.zarr`` name)."""
    if not path.is_dir():
        return False
    markers = ("zarr.json", ".zarray", ".zgroup")
    return path.suffix.lower() == ZARR_SUFFIX or any((path / m).is_file() for m in markers)


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:  # pragma: no cover - the extra is installed in the dev environment
        raise DataError(
            "reading Zarr or predicting block-wise needs zarr: pip install 'unetkit[large]'"
        ) from None
    return zarr


@dataclass
class LazyImage:
    """An image ``(C, *spatial)`` read region by region.

    Attributes:
        path: where it comes from (for messages).
        array: a Zarr-like array (``shape``, ``dtype``, basic slicing).
        order: the array axis of ``(channel, *spatial)``; ``None`` for an absent channel axis.
        drop: array axes of length 1 to index with 0 (an OME ``t`` axis).
        scale: the physical size of one pixel per spatial axis, when the source says.
    """

    path: Path
    array: Any
    order: tuple[int | None, ...]
    drop: tuple[int, ...] = ()
    scale: tuple[float, ...] | None = None
    _closers: list[Any] = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, *spatial)``."""
        s = self.array.shape
        return tuple(1 if a is None else int(s[a]) for a in self.order)

    @property
    def spatial(self) -> tuple[int, ...]:
        """The spatial shape."""
        return self.shape[1:]

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype."""
        return np.dtype(self.array.dtype)

    def read(self, region: Sequence[slice]) -> np.ndarray:
        """The raw values of ``region`` (one slice per spatial axis): ``(C, *region)``."""
        index: list[Any] = [slice(None)] * len(self.array.shape)
        for a in self.drop:
            index[a] = 0
        for a, s in zip(self.order[1:], region, strict=True):
            index[a] = s  # type: ignore[index]
        block = np.asarray(self.array[tuple(index)])
        kept = [a for a in range(len(self.array.shape)) if a not in self.drop]
        present = [a for a in self.order if a is not None]
        block = np.transpose(block, [kept.index(a) for a in present])
        return block if self.order[0] is not None else block[None]

    def close(self) -> None:
        """Release the file handles of a TIFF source."""
        for c in self._closers:
            with contextlib.suppress(Exception):
                c.close()
        self._closers.clear()

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _layout(path: Path, axes: str | None, ndim: int, spatial_dims: int) -> tuple[list, list]:
    """``(order, drop)`` from axis names (lower-case letters) or, without them, from ``ndim``."""
    if axes is None:
        if ndim == spatial_dims:
            return [None, *range(ndim)], []
        if ndim == spatial_dims + 1:
            return list(range(ndim)), []
        raise DataError(
            f"{path}: a Zarr array of {ndim} axes; this {spatial_dims}D model needs "
            f"{spatial_dims} (one channel) or {spatial_dims + 1} (channels first) axes"
        )
    drop = [i for i, a in enumerate(axes) if a not in _CHANNEL_AXES and a not in "zyx"]
    channel = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    spatial = [i for i, a in enumerate(axes) if a in "zyx"]
    if len(channel) > 1 or len(spatial) != spatial_dims:
        raise DataError(
            f"{path}: has axes {axes!r} ({len(spatial)} spatial); this {spatial_dims}D model "
            f"needs {spatial_dims} spatial axes and at most one channel axis"
        )
    return [channel[0] if channel else None, *spatial], drop


def _ome_level(path: Path, group: Any) -> tuple[str, str | None, tuple[float, ...] | None]:
    """The full-resolution array path, its axis names and pixel scale of an OME-Zarr group."""
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        arrays = sorted(name for name, _ in group.arrays())
        raise DataError(
            f"{path}: is a Zarr group without OME-Zarr multiscales metadata; give one of its "
            f"arrays instead (e.g. {path / (arrays[0] if arrays else '0')})"
        )
    ms = multiscales[0]
    dataset = ms["datasets"][0]
    axes = ms.get("axes")
    names = None
    if axes:
        names = "".join((a["name"] if isinstance(a, dict) else str(a))[0].lower() for a in axes)
    scale = None
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = tuple(float(v) for v in t["scale"])
    return str(dataset["path"]), names, scale


def _check_dropped(path: Path, shape: Sequence[int], drop: Sequence[int], axes: str | None) -> None:
    for a in drop:
        if shape[a] != 1:
            name = axes[a] if axes else str(a)
            raise DataError(
                f"{path}: axis {name!r} has length {shape[a]}; predict one image at a time "
                f"(split it along {name!r} first)"
            )


def _check_chunks(path: Path, array: Any) -> None:
    total = int(array.nchunks)
    written = int(array.nchunks_initialized)
    if written < total:
        raise DataError(
            f"{path}: {total - written} of {total} Zarr chunks are missing (never written, or "
            f"deleted); they would read as the fill value {array.fill_value} and be predicted "
            f"as if real. Write the missing chunks (or the whole image) again"
        )


def open_lazy(path: str | Path, spatial_dims: int) -> LazyImage:
    """Open a Zarr array, OME-Zarr image or TIFF for region reads (see the module doc).

    Raises:
        DataError: not readable, axes that do not fit the model, or missing Zarr chunks.
    """
    p = Path(path)
    zarr = _zarr()
    if is_zarr(p):
        try:
            node = zarr.open(str(p), mode="r")
        except Exception as exc:
            raise DataError(f"{p}: not a readable Zarr store ({exc.__class__.__name__})") from None
        names = scale = None
        if not hasattr(node, "shape"):  # a group
            sub, names, scale = _ome_level(p, node)
            node = node[sub]
        _check_chunks(p, node)
        if names is not None and len(names) != len(node.shape):
            raise DataError(f"{p}: OME axes {names!r} do not match the array's {node.shape}")
        order, drop = _layout(p, names, len(node.shape), spatial_dims)
        _check_dropped(p, node.shape, drop, names)
        spatial_scale = None
        if scale is not None and len(scale) == len(node.shape):
            spatial_scale = tuple(scale[a] for a in order[1:])
        return LazyImage(p, node, tuple(order), tuple(drop), spatial_scale)
    if p.suffix.lower() in TIFF_SUFFIXES and p.is_file():
        import tifffile

        try:
            tif = tifffile.TiffFile(p)
            series = tif.series[0]
            store = series.aszarr(level=0)
            array = zarr.open(store, mode="r")
        except Exception as exc:
            raise DataError(f"{p}: not a readable TIFF ({exc.__class__.__name__}: {exc})") from None
        axes = series.axes.lower().replace("i", "z").replace("q", "z")
        order, drop = _layout(p, axes, len(array.shape), spatial_dims)
        _check_dropped(p, array.shape, drop, axes)
        return LazyImage(p, array, tuple(order), tuple(drop), None, [store, tif])
    raise DataError(f"{p}: not a Zarr store or TIFF file; block-wise prediction reads those")
