"""Bad NIfTI volumes (`read_image`) and NIfTI datasets whose image and mask disagree
(`check_dataset`). Listed under the images and dataset areas (see their ``CASES``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from builders import _check, _read_image, _write_bytes
from catalogue_kit import ApiCase

SHAPE = (6, 5, 4)


def _nifti(
    affine: np.ndarray, shape: tuple[int, ...] = SHAPE, dtype: type = np.float32
) -> Callable[[Path], None]:
    """A NIfTI file of zeros with ``affine`` written into its sform and qform."""

    def build(path: Path) -> None:
        import nibabel as nib

        path.parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(np.zeros(shape, dtype), np.eye(4))
        header = img.header
        header.set_sform(affine, code=2)
        header.set_qform(np.eye(4), code=0)
        nib.save(nib.Nifti1Image(np.zeros(shape, dtype), None, header), str(path))

    return build


def _affine(*diagonal: float) -> np.ndarray:
    return np.diag([*diagonal, 1.0])


def _nifti_pair(mask_affine: np.ndarray) -> Callable[[Path], None]:
    """``root/images/c0.nii.gz`` and its mask on another grid (``mask_affine``)."""

    def build(root: Path) -> None:
        _nifti(_affine(1.0, 1.0, 3.0))(root / "images" / "c0.nii.gz")
        _nifti(mask_affine, dtype=np.uint8)(root / "masks" / "c0.nii.gz")

    return build


IMAGE_CASES: list[ApiCase] = [
    ApiCase(
        "images",
        "NIfTI with a NaN in its affine",
        _read_image("nan.nii.gz", _nifti(_affine(1.0, float("nan"), 3.0))),
        ("nan.nii.gz", "NaN or infinite", "orientation is unknown"),
    ),
    ApiCase(
        "images",
        "NIfTI with a singular affine",
        _read_image("flat.nii", _nifti(_affine(1.0, 0.0, 3.0))),
        ("flat.nii", "singular", "fix the header"),
    ),
    ApiCase(
        "images",
        "4D NIfTI given to a 3D model",
        _read_image("dwi.nii.gz", _nifti(_affine(2, 2, 2), (*SHAPE, 3)), spatial_dims=3),
        ("dwi.nii.gz", "4D NIfTI", "split the extra axis"),
    ),
    ApiCase(
        "images",
        "NIfTI volume given to a 2D model",
        _read_image("vol.nii.gz", _nifti(_affine(2, 2, 2)), spatial_dims=2),
        ("vol.nii.gz", "3D volume", "pass spatial_dims=3"),
    ),
    ApiCase(
        "images",
        ".gz that is not .nii.gz",
        _read_image("table.csv.gz", _write_bytes(b"\x1f\x8b\x08\x00")),
        ("table.csv.gz", "unsupported file type", ".nii.gz"),
    ),
]

DATASET_CASES: list[ApiCase] = [
    ApiCase(
        "dataset",
        "NIfTI mask mirrored against its image",
        _check(_nifti_pair(_affine(-1.0, 1.0, 3.0))),
        ("ds/masks/c0.nii.gz", "affine differs from its image", "resample"),
        kind="problem",
    ),
]
