"""Read and write images and masks as NumPy arrays: PNG, TIFF, ``.npy`` and NIfTI.

An image comes back as ``float32`` ``(C, *spatial)``; a mask as ``int64`` ``(*spatial)``. Pixel
values are kept as stored (a 16-bit image keeps 0..65535; no rescaling to [0, 1]); scaling is
the job of :func:`unetkit.data.sampling.normalize`.

Layout rules (how many spatial dims, and which axis is channels):

* **PNG** is always 2D. Grey → ``(1, H, W)``; RGB → ``(3, H, W)``; an alpha channel (RGBA,
  grey+alpha) is **dropped when it is constant** (the usual fully opaque image) and kept as the
  last channel otherwise. Palette PNGs are converted to RGB for images; for masks the palette
  *indices* are the labels (the Pascal VOC convention). 16-bit grey is kept exactly; 16-bit
  colour PNGs are refused because Pillow would reduce them to 8 bits (save them as TIFF).
* **TIFF** uses the axes tifffile reports: a samples (``S``, e.g. RGB) or channel (``C``) axis
  becomes the channel axis; a single page is 2D; a multi-page stack (``Z``/``I``/``Q``/``T``)
  is a 3D volume ``(C, D, H, W)``. With ``spatial_dims=2`` a stack without a channel axis is
  read as a multi-channel 2D image instead (pages become channels).
* **.npy** has no metadata, so the rule is by ``ndim``: with ``spatial_dims=None`` an array of
  ndim 1, 2 or 3 has that many spatial dims and one channel is added (``(L,) → (1, L)``,
  ``(H, W) → (1, H, W)``, ``(D, H, W) → (1, D, H, W)``), and ndim 4 is ``(C, D, H, W)``. For a
  multi-channel 1D or 2D array pass ``spatial_dims``: an array with ``ndim == spatial_dims + 1``
  has its channels first (``(C, L)`` with ``spatial_dims=1``, ``(C, H, W)`` with
  ``spatial_dims=2``).

* **NIfTI** (``.nii``, ``.nii.gz``; extra ``medical``) is a 3D volume ``(1, D, H, W)`` in one
  canonical orientation (see :mod:`unetkit.io.nifti`); outputs go back to the input's own
  orientation, affine and header through ``like=`` of :func:`write_mask`/:func:`write_image`.

A mask follows the same rules and must then have one channel; a mask with several channels that
are all equal (grey saved as RGB) is accepted and one channel is kept.

Safety: only ``.png .tif .tiff .npy`` are read, the content must match the extension (magic
bytes), pickled ``.npy`` files are refused, and the number of pixels (voxels; channels are not
counted) is checked from the header *before* decoding, against ``max_pixels`` (argument), else
the ``UNETKIT_MAX_PIXELS`` environment variable, else :data:`DEFAULT_MAX_PIXELS`. Every problem
with a file raises :class:`unetkit.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.errors import DataError
from unetkit.io import nifti
from unetkit.io.atomic import atomic_write
from unetkit.io.formats import ALLOWED_SUFFIXES, FORMAT_NAMES, FORMAT_OF_SUFFIX
from unetkit.io.formats import check_format as _check_format
from unetkit.io.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, resolve_max_pixels
from unetkit.io.npy import npy_bytes, read_npy
from unetkit.io.png import png_bytes, read_png
from unetkit.io.tiff import read_tiff, tiff_bytes

__all__ = [
    "ALLOWED_SUFFIXES",
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "read_image",
    "read_mask",
    "resolve_max_pixels",
    "stored_dtype",
    "write_image",
    "write_mask",
]


# (array, axis 0 is channels, default number of spatial dims)
_Raw = tuple[np.ndarray, bool, int]


def _read_raw(path: Path, max_pixels: int | None, spatial_dims: int | None, as_mask: bool) -> _Raw:
    limit = resolve_max_pixels(max_pixels)
    fmt = _check_format(path)
    try:
        if fmt == "png":
            return read_png(path, limit, as_mask=as_mask)
        if fmt == "tiff":
            return read_tiff(path, limit, spatial_dims)
        if fmt == "nifti":
            return nifti.read_nifti(path, limit, spatial_dims)
        return read_npy(path, limit)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: not enough memory to decode this file") from None
    except Exception as exc:  # any decoder failure means a broken file, never a crash
        detail = str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
        raise DataError(
            f"{path}: cannot decode {FORMAT_NAMES[fmt]} ({detail}); the file is corrupt or "
            f"truncated, re-export it"
        ) from None


def _check_spatial_dims(spatial_dims: int | None) -> None:
    if spatial_dims is not None and (
        isinstance(spatial_dims, bool) or spatial_dims not in (1, 2, 3)
    ):
        raise ValueError(f"spatial_dims: expected None, 1, 2 or 3, got {spatial_dims!r}")


def _channel_first(path: Path, raw: _Raw, spatial_dims: int | None) -> np.ndarray:
    """Apply the layout rules of the module docstring: ``(C, *spatial)``."""
    arr, has_channels, default_sd = raw
    if has_channels:
        sd = arr.ndim - 1
        if spatial_dims is not None and spatial_dims != sd:
            raise DataError(
                f"{path}: holds a {sd}D image with {arr.shape[0]} channels, but "
                f"spatial_dims={spatial_dims} was asked for; pass spatial_dims={sd}"
            )
    else:
        sd = spatial_dims if spatial_dims is not None else default_sd
        if arr.ndim == sd:
            arr = arr[None]
        elif arr.ndim != sd + 1:
            raise DataError(
                f"{path}: array of shape {arr.shape} cannot be read as a {sd}D image "
                f"(expected {sd} or {sd + 1} dims); pass spatial_dims=1, 2 or 3 to match"
            )
    if not 1 <= arr.ndim - 1 <= 3:
        raise DataError(
            f"{path}: array of shape {arr.shape} has {arr.ndim - 1} spatial dims; "
            f"1, 2 or 3 are supported"
        )
    if arr.size == 0:
        raise DataError(f"{path}: image has shape {arr.shape} with no pixels; re-export it")
    return arr


def _check_dtype(path: Path, arr: np.ndarray) -> None:
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: pixel type {arr.dtype} is not supported; save integers or floats")


# ----------------------------------------------------------------------------- public API


def read_image(
    path: str | os.PathLike[str],
    *,
    spatial_dims: int | None = None,
    max_pixels: int | None = None,
    keep_integers: bool = False,
) -> np.ndarray:
    """Read an image file as ``float32`` ``(C, *spatial)``, values as stored.

    Args:
        path: a ``.png``, ``.tif``/``.tiff`` or ``.npy`` file.
        spatial_dims: ``None`` to infer (see the module docstring), or 1, 2, 3 to say how many
            trailing axes are spatial (the rest, at most one axis, is channels).
        max_pixels: largest number of pixels/voxels accepted; ``None`` uses
            ``UNETKIT_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`.
        keep_integers: return integer images in their stored integer type (a quarter of the
            memory of float32 for 8-bit images; prediction converts tile by tile).

    Returns:
        ``(C, *spatial)`` ``float32`` with 1..3 spatial dims.

    Raises:
        DataError: wrong or mismatched format, corrupt/truncated file, too many pixels,
            an unusable layout, or NaN/Inf values. The message names the file.
        ValueError: a bad ``spatial_dims`` or ``max_pixels`` argument.
    """
    _check_spatial_dims(spatial_dims)
    p = Path(path)
    arr = _channel_first(p, _read_raw(p, max_pixels, spatial_dims, as_mask=False), spatial_dims)
    _check_dtype(p, arr)
    if keep_integers and arr.dtype.kind in "iu":
        return np.ascontiguousarray(arr)
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, not as a warning
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise DataError(
            f"{p}: {bad} pixel value(s) are NaN or infinite (or too large for float32); "
            f"fix or replace them before training"
        )
    return out


def read_mask(
    path: str | os.PathLike[str],
    *,
    spatial_dims: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read a label mask as ``int64`` ``(*spatial)``.

    The file must hold integer labels: a float mask must be integer-valued; a mask with several
    channels is accepted only if they are all equal (then one is kept). Label values are not
    range-checked here (see :func:`unetkit.data.dataset.check_dataset`).

    Args: as :func:`read_image`.

    Returns:
        ``(*spatial)`` ``int64``.

    Raises:
        DataError: as :func:`read_image`, plus multi-channel or non-integer masks.
        ValueError: a bad ``spatial_dims`` or ``max_pixels`` argument.
    """
    _check_spatial_dims(spatial_dims)
    p = Path(path)
    arr = _channel_first(p, _read_raw(p, max_pixels, spatial_dims, as_mask=True), spatial_dims)
    _check_dtype(p, arr)
    if arr.shape[0] > 1 and not all(np.array_equal(arr[0], arr[c]) for c in range(1, arr.shape[0])):
        raise DataError(
            f"{p}: mask has {arr.shape[0]} different channels; masks must be "
            f"single-channel label images (0 = background, 1..K = classes), not colour images"
        )
    arr = arr[0]
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise DataError(f"{p}: mask contains NaN or infinite values; masks hold labels")
        if not np.array_equal(arr, np.round(arr)):
            raise DataError(
                f"{p}: mask has non-integer values (e.g. {_first_fraction(arr)}); masks hold "
                f"integer class labels — threshold or round it, and save it losslessly"
            )
        if np.abs(arr).max(initial=0) > 2**62:
            raise DataError(f"{p}: mask labels are too large for int64")
    elif arr.dtype == np.uint64 and arr.max(initial=0) > np.iinfo(np.int64).max:
        raise DataError(f"{p}: mask labels are too large for int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


def stored_dtype(path: str | os.PathLike[str]) -> np.dtype:
    """The pixel type a (readable) file stores, from its header: e.g. ``float32`` for a mask
    saved as floats, which :func:`read_mask` accepts when its values are integers."""
    p = Path(path)
    fmt = _check_format(p)
    if fmt == "png":
        with open(p, "rb") as fh:
            bit_depth = fh.read(25)[24:25]
        return np.dtype(np.uint16 if bit_depth == b"\x10" else np.uint8)
    if fmt == "npy":
        return np.load(p, mmap_mode="r", allow_pickle=False).dtype
    if fmt == "nifti":
        return nifti.stored_dtype(p)
    import tifffile

    with tifffile.TiffFile(p) as tif:
        return np.dtype(tif.series[0].dtype)


def _first_fraction(arr: np.ndarray) -> float:
    flat = arr.ravel()
    idx = np.flatnonzero(flat != np.round(flat))
    return float(flat[idx[0]]) if idx.size else float("nan")


def _smallest_uint(arr: np.ndarray, *, allow_32: bool) -> np.dtype | None:
    """uint8/uint16(/uint32) if every value is an integer that fits, else None.

    Integer arrays are checked without temporaries (a huge label map is not copied)."""
    if arr.size and arr.dtype.kind in "biu":
        if arr.dtype.kind != "u" and arr.min() < 0:
            return None
    elif arr.size and (arr.min() < 0 or not np.array_equal(arr, np.round(arr))):
        return None
    top = float(arr.max(initial=0))
    for dt in (np.uint8, np.uint16, *((np.uint32,) if allow_32 else ())):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return None


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if nifti.is_nifti_name(path):
        return ".nii"
    if suffix not in FORMAT_OF_SUFFIX or suffix == ".gz":
        allowed = " ".join(ALLOWED_SUFFIXES)
        raise ValueError(f"path: unsupported extension {suffix!r}; use {allowed}")
    return suffix


def write_image(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    like: str | os.PathLike[str] | None = None,
) -> None:
    """Write an image ``(C, *spatial)`` atomically, format chosen by the extension.

    * ``.npy``: ``float32``; ``C == 1`` is dropped so that :func:`read_image` gives the array
      back unchanged; a multi-channel 1D/2D array must be read with ``spatial_dims``.
    * ``.tif``/``.tiff``: 2D or 3D; C of 3 or 4 in 2D is stored as RGB(A) when the values fit
      ``uint8``; otherwise channels are stored with a ``C`` axis. Values are stored as
      ``uint8``/``uint16`` when they are integers that fit, else ``float32``.
    * ``.png``: 2D with C in 1, 3, 4; integer values in 0..255 (or 0..65535 for C == 1).
    * ``.nii``/``.nii.gz``: ``float32`` ``(C, D, H, W)`` in the network's orientation, written
      on the grid of the NIfTI file ``like`` (required: its orientation, affine and header; see
      :mod:`unetkit.io.nifti`); several channels become the 4th axis.

    Raises:
        ValueError: ``array`` does not fit the format (named in the message).
    """
    p = Path(path)
    suffix = _suffix(p)
    arr = np.asarray(array)
    if arr.ndim < 2 or arr.ndim > 4:
        raise ValueError(f"array: expected (C, *spatial) with 1..3 spatial dims, got {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("array: contains NaN or infinite values")
    sd = arr.ndim - 1
    if suffix == ".nii":
        payload = _nifti_payload(p, arr, like, is_mask=False)
    elif suffix == ".npy":
        payload = npy_bytes(arr[0] if arr.shape[0] == 1 else arr)
    elif suffix == ".png":
        dt = _smallest_uint(arr, allow_32=False)
        if sd != 2 or arr.shape[0] not in (1, 3, 4):
            raise ValueError(f"array: PNG needs (1|3|4, H, W), got {arr.shape}; use .tif or .npy")
        if dt is None or (dt == np.uint16 and arr.shape[0] != 1):
            raise ValueError(
                "array: PNG stores integers 0..255 (0..65535 for grey); use .tif or .npy"
            )
        payload = png_bytes((arr[0] if arr.shape[0] == 1 else arr).astype(dt))
    else:
        if sd == 1:
            raise ValueError("array: TIFF needs a 2D or 3D image; use .npy for 1D signals")
        dt = _smallest_uint(arr, allow_32=False) or np.dtype(np.float32)
        if sd == 2 and arr.shape[0] in (3, 4) and dt == np.uint8:
            payload = tiff_bytes(np.moveaxis(arr.astype(dt), 0, -1), "YXS")
        elif arr.shape[0] == 1:
            payload = tiff_bytes(arr[0].astype(dt), "ZYX"[-sd:])
        else:
            payload = tiff_bytes(arr.astype(dt), "C" + "ZYX"[-sd:])
    with atomic_write(p, "wb") as fh:
        fh.write(payload)


def _nifti_payload(
    path: Path, arr: np.ndarray, like: str | os.PathLike[str] | None, *, is_mask: bool
) -> bytes:
    if like is None:
        raise ValueError(
            f"like: {path.name} is NIfTI, which is written only on the grid of the NIfTI input "
            f"it belongs to (pass like=<that file>), never without its affine"
        )
    gz = path.name.lower().endswith(".gz")
    return nifti.nifti_bytes(arr, like, gz=gz, is_mask=is_mask)


def _label_dtype(arr: np.ndarray) -> np.dtype:
    """The smallest of uint8, uint16, int32 that holds every label (int64 beyond)."""
    low, high = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    for dt in (np.uint8, np.uint16, np.int32):
        if np.iinfo(dt).min <= low and high <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def write_mask(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    like: str | os.PathLike[str] | None = None,
) -> None:
    """Write a label mask ``(*spatial)`` atomically, format chosen by the extension.

    ``.png`` (2D) stores ``uint8`` or ``uint16``; ``.tif`` (2D, or 3D as a multi-page stack)
    the smallest unsigned type that fits; ``.npy`` keeps ``int64``; ``.nii``/``.nii.gz`` the
    smallest integer type that fits, on the grid of the NIfTI file ``like`` (required).

    Raises:
        ValueError: non-integer or negative labels for PNG/TIFF, or a shape the format cannot
            hold.
    """
    p = Path(path)
    suffix = _suffix(p)
    arr = np.asarray(array)
    if not 1 <= arr.ndim <= 3:
        raise ValueError(f"array: expected a mask (*spatial) with 1..3 dims, got {arr.shape}")
    if arr.dtype.kind not in "biu":
        raise ValueError(f"array: mask must hold integers, got dtype {arr.dtype}")
    if suffix == ".nii":
        payload = _nifti_payload(p, arr.astype(_label_dtype(arr), copy=False), like, is_mask=True)
    elif suffix == ".npy":
        payload = npy_bytes(arr.astype(np.int64, copy=False))
    else:
        dt = _smallest_uint(arr, allow_32=suffix != ".png")
        if dt is None:
            raise ValueError(f"array: labels must be 0..65535 for {suffix}; use .npy")
        if suffix == ".png":
            if arr.ndim != 2:
                raise ValueError(f"array: PNG masks must be 2D, got {arr.shape}; use .tif")
            payload = png_bytes(arr.astype(dt, copy=False))
        else:
            if arr.ndim == 1:
                raise ValueError("array: TIFF needs a 2D or 3D mask; use .npy for 1D")
            payload = tiff_bytes(arr.astype(dt, copy=False), "ZYX"[-arr.ndim :])
    with atomic_write(p, "wb") as fh:
        fh.write(payload)
