"""NIfTI volumes (``.nii``, ``.nii.gz``) with their geometry, through nibabel (extra ``medical``).

A NIfTI file stores voxels in any axis order and direction, with an affine that maps voxel
indices to world millimetres. unetkit gives the network one orientation for every volume:

* **read**: the voxel array is brought to the closest canonical orientation (RAS+, by
  :func:`nibabel.orientations.io_orientation`: a permutation and flips of the stored axes, no
  resampling), then ordered ``(S, A, R)``, i.e. ``(D, H, W)`` with the superior axis first, the
  usual slice axis and often the coarse one, so an anisotropic model's first axis is it.
* **write**: an output array in that network order goes back through the inverse permutation
  and flips into the *input's own* voxel order, and is saved with the input's exact header:
  its sform and qform (codes included), pixdim, units and description. Only the pixel type and
  the scaling change (labels are stored unscaled). Writing a NIfTI output needs the input it
  belongs to (``like=``): unetkit never writes a mask without its affine.

Refused with one line naming the file: a non-finite or singular affine (no orientation can be
read from it), a 4D (or higher) volume, a volume asked for as 1D/2D, and (see
:func:`check_same_geometry`) an image and a mask of one case whose grids disagree.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import DataError
from unetkit.io.limits import check_pixels

#: First bytes of a NIfTI-1/-2 header (``sizeof_hdr``, either byte order) and of gzip.
NIFTI_MAGICS = (
    (348).to_bytes(4, "little"),
    (348).to_bytes(4, "big"),
    (540).to_bytes(4, "little"),
    (540).to_bytes(4, "big"),
)
GZIP_MAGIC = b"\x1f\x8b"
#: The canonical orientation of the network's arrays, listed in the array's axis order.
NETWORK_AXES = ("S", "A", "R")


def is_nifti_name(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` ends in ``.nii`` or ``.nii.gz`` (any case)."""
    name = Path(path).name.lower()
    return name.endswith((".nii", ".nii.gz"))


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:  # pragma: no cover - nibabel is in the dev extra
        raise DataError("NIfTI files need nibabel: pip install 'unetkit[medical]'") from None
    return nibabel


@dataclass(frozen=True)
class Geometry:
    """Where a NIfTI volume's voxels are, and how its array maps to the network's.

    Attributes:
        affine: ``(4, 4)`` voxel-to-world matrix of the stored array (nibabel's best affine).
        shape: the stored array's spatial shape ``(I, J, K)``.
        ornt: ``(3, 2)`` nibabel orientation of the stored axes relative to RAS+.
        spacing: voxel size in mm along the network's axes ``(D, H, W)`` (``(S, A, R)``).
        network_shape: the network array's spatial shape ``(D, H, W)``.
    """

    affine: np.ndarray
    shape: tuple[int, ...]
    ornt: np.ndarray
    spacing: tuple[float, ...]
    network_shape: tuple[int, ...]


def _load(path: Path) -> Any:
    nib = _nibabel()
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except Exception as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
        raise DataError(
            f"{path}: cannot read NIfTI ({detail}); the file is corrupt or truncated, re-export it"
        ) from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):  # pragma: no cover - by suffix
        raise DataError(f"{path}: not a NIfTI-1/-2 image ({type(img).__name__})")
    return img


def geometry(path: str | os.PathLike[str], img: Any = None) -> Geometry:
    """The :class:`Geometry` of a 3D NIfTI file (header only; no voxels are decoded).

    Raises:
        DataError: the file cannot be read, is not 3D, or its affine is non-finite or singular.
    """
    p = Path(path)
    img = _load(p) if img is None else img
    shape = tuple(int(n) for n in img.shape)
    if len(shape) > 3 and any(n > 1 for n in shape[3:]):
        raise DataError(
            f"{p}: a {len(shape)}D NIfTI of shape {shape}; unetkit models take 3D volumes, so "
            f"split the extra axis into one 3D file per channel or time point"
        )
    shape = (*shape[:3], *(1,) * (3 - len(shape[:3])))
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise DataError(
            f"{p}: its affine (voxel-to-world matrix) holds NaN or infinite values, so its "
            f"orientation is unknown; fix the header (sform/qform) before using the file"
        )
    linear = affine[:3, :3]
    columns = np.sqrt((linear**2).sum(axis=0))
    if columns.min() <= 0 or abs(np.linalg.det(linear)) <= 1e-6 * float(np.prod(columns)):
        raise DataError(
            f"{p}: its affine (voxel-to-world matrix) is singular (zero voxel size or "
            f"collinear axes), so its orientation is unknown; fix the header (sform/qform)"
        )
    nib = _nibabel()
    ornt = nib.orientations.io_orientation(affine)
    canonical = [0.0, 0.0, 0.0]
    canonical_shape = [0, 0, 0]
    for stored_axis, (ras_axis, _flip) in enumerate(ornt):
        canonical[int(ras_axis)] = float(columns[stored_axis])
        canonical_shape[int(ras_axis)] = shape[stored_axis]
    return Geometry(
        affine=affine,
        shape=shape,
        ornt=ornt,
        spacing=tuple(canonical[::-1]),
        network_shape=tuple(canonical_shape[::-1]),
    )


def to_network(data: np.ndarray, geom: Geometry) -> np.ndarray:
    """Stored voxels ``(I, J, K)`` -> network order ``(D, H, W)`` = ``(S, A, R)``; exact."""
    nib = _nibabel()
    ras = nib.orientations.apply_orientation(data, geom.ornt)  # (R, A, S)
    return np.ascontiguousarray(np.transpose(ras, (2, 1, 0, *range(3, ras.ndim))))


def from_network(array: np.ndarray, geom: Geometry) -> np.ndarray:
    """Network order ``(D, H, W, ...)`` -> the stored voxel order ``(I, J, K, ...)``; exact."""
    nib = _nibabel()
    ras = np.transpose(array, (2, 1, 0, *range(3, array.ndim)))  # (R, A, S, ...)
    identity = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    back = nib.orientations.ornt_transform(identity, geom.ornt)
    return np.ascontiguousarray(nib.orientations.apply_orientation(ras, back))


def read_nifti(path: Path, limit: int, spatial_dims: int | None) -> tuple[np.ndarray, bool, int]:
    """``(array (D, H, W) in network order, has_channels=False, 3)`` of a NIfTI volume.

    Values as stored, with the header's scaling applied when it has one (then ``float``).
    """
    img = _load(path)
    geom = geometry(path, img)
    if spatial_dims is not None and spatial_dims != 3:
        raise DataError(
            f"{path}: holds a 3D volume of shape {geom.shape}, but spatial_dims={spatial_dims} "
            f"was asked for; pass spatial_dims=3"
        )
    check_pixels(path, int(np.prod(geom.shape)), limit)
    data = np.asanyarray(img.dataobj).reshape(geom.shape)
    return to_network(data, geom), False, 3


def stored_dtype(path: Path) -> np.dtype:
    """The pixel type a NIfTI file stores (``float64`` where its header scales the values)."""
    img = _load(path)
    slope = getattr(img.dataobj, "slope", 1.0)  # nibabel keeps the scaling on the proxy
    inter = getattr(img.dataobj, "inter", 0.0)
    if float(slope) != 1.0 or float(inter) != 0.0:
        return np.dtype(np.float64)
    return np.dtype(img.header.get_data_dtype())


def spacing(path: str | os.PathLike[str]) -> tuple[float, ...]:
    """Voxel size in mm along the network's axes ``(D, H, W)``, from the header."""
    return geometry(path).spacing


def nifti_bytes(
    array: np.ndarray, like: str | os.PathLike[str], *, gz: bool, is_mask: bool
) -> bytes:
    """The bytes of a NIfTI file holding ``array`` on the grid of the NIfTI file ``like``.

    ``array``: ``(D, H, W)`` (a mask or one channel) or ``(C, D, H, W)`` in network order,
    whose spatial shape must be ``like``'s network shape. Returns the file in ``like``'s own
    voxel order with its header (sform, qform and their codes, pixdim, units) and no scaling;
    several channels become the 4th (``t``) axis.

    Raises:
        ValueError: ``like`` is not a NIfTI file, or the shapes disagree.
        DataError: ``like`` cannot be read or has an unusable affine.
    """
    if not is_nifti_name(like):
        raise ValueError(
            f"like: writing NIfTI needs the NIfTI input it belongs to (for its affine and "
            f"header), got {like!r}; write .npy or .tif for other inputs"
        )
    ref = _load(Path(like))
    geom = geometry(like, ref)
    arr = np.asarray(array)
    channels = arr.ndim == 4
    spatial = arr.shape[1:] if channels else arr.shape
    if tuple(spatial) != geom.network_shape:
        raise ValueError(
            f"array: spatial shape {tuple(spatial)} does not match {like} "
            f"(shape {geom.network_shape} in network order); nothing was written"
        )
    data = np.moveaxis(arr, 0, -1) if channels and arr.shape[0] > 1 else arr[0] if channels else arr
    stored = from_network(data, geom)
    if len(ref.shape) > 3 and stored.ndim == 3:  # a (I, J, K, 1) input keeps its 4D shape
        stored = stored.reshape(ref.shape)
    header = ref.header.copy()
    out = type(ref)(stored, None, header)
    out.set_data_dtype(stored.dtype if is_mask else np.float32)
    out.header.set_slope_inter(1.0, 0.0)
    raw = out.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if gz else raw


def check_same_geometry(
    image: str | os.PathLike[str], mask: str | os.PathLike[str], atol: float = 1e-3
) -> None:
    """Refuse an image and a mask of one case whose voxel grids disagree (shape or affine).

    ``atol``: largest difference allowed in any affine entry (mm). Both files must be NIfTI.

    Raises:
        DataError: naming both files and what differs.
    """
    a, b = geometry(image), geometry(mask)
    if a.shape != b.shape:
        raise DataError(
            f"{mask}: its voxel grid {b.shape} differs from its image {image} {a.shape}; "
            f"resample the mask onto the image's grid"
        )
    diff = float(np.abs(a.affine - b.affine).max())
    if diff > atol:
        raise DataError(
            f"{mask}: its affine differs from its image {image}'s by up to {diff:.3g} mm, so "
            f"the mask is in another place or orientation; resample it onto the image's grid "
            f"(or fix the header that is wrong)"
        )
