"""Bad dataset folders: `check_dataset`, `load_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cases_nifti
import numpy as np
import tifffile
from builders import (
    _bomb_dataset,
    _check,
    _colour_mask,
    _empty_dirs,
    _float_image_16,
    _labels,
    _load,
    _negative_mask,
    _only_background,
    _put,
    _rm,
    _with,
    _write_bytes,
    dataset,
    image_array,
    jpeg_like_mask,
    mask_array,
    npy,
    png,
    png_bytes,
    truncated,
)
from catalogue_kit import ApiCase

from unetkit.errors import DataError


def _mask16(values: tuple[int, ...]) -> Callable[[Path], object]:
    """A 16-bit PNG mask holding ``values`` (background first)."""

    def make(path: Path) -> object:
        m = np.full((16, 16), values[0], np.uint16)
        for i, v in enumerate(values[1:]):
            m[2 + 3 * i : 4 + 3 * i, 3:9] = v
        return png(path, m)

    return make


def _float_mask(path: Path) -> object:
    return npy(path, mask_array().astype(np.float32))


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "gone.png")


CASES: list[ApiCase] = [
    ApiCase(
        "dataset",
        "folder does not exist",
        _check(lambda r: None),
        ("ds: not a folder", "images/ and masks/"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "folder without masks/",
        _check(lambda r: (r / "images").mkdir(parents=True)),
        ("missing folder(s) masks/",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "empty images/ and masks/",
        _check(_empty_dirs),
        ("ds/images: no images",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "image without a mask",
        _check(_with(_rm("masks/s1.png"))),
        ("ds/images/s1.png: no mask with stem 's1'",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "mask without an image",
        _check(_with(_rm("images/s1.png"))),
        ("ds/masks/s1.png: no image with stem 's1'",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "two files with one stem",
        _check(_with(_put("images/s0.tif", lambda p: tifffile.imwrite(p, image_array())))),
        ("two files with stem 's0'",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "image and mask sizes differ",
        _check(_with(_put("masks/s1.png", lambda p: png(p, mask_array((16, 12)))))),
        ("ds/masks/s1.png: mask size 16x12 differs from image size 16x16",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "labels outside the classes (num_classes=2)",
        _check(_with(_put("masks/s1.png", _labels((3, 7)))), num_classes=2),
        ("ds/masks/s1.png: labels 3, 7 are outside 0..1",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "0/65535 binary mask (16-bit export), no --num-classes",
        _check(_with(_put("masks/s1.png", _mask16((0, 65535))))),
        ("ds/masks/s1.png: labels 0, 65535 are not a class map: the largest, 65535",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "labels far above the values used (0, 1, 900)",
        _check(_with(_put("masks/s1.png", _mask16((0, 1, 900))))),
        ("ds/masks/s1.png: labels 0, 1, 900 are not a class map",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "float mask with integer values",
        _check(_with(_rm("masks/s1.png"), _put("masks/s1.npy", _float_mask))),
        ("ds/masks/s1.npy: stores float32 values (0, 1); a mask holds integer class labels",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "a dangling symlink among the masks",
        _check(_with(_rm("masks/s1.png"), _put("masks/s1.png", _dangling))),
        ("ds/masks/s1.png: is a dangling symlink to", "gone.png"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "negative labels",
        _check(_with(_rm("masks/s1.png"), _put("masks/s1.npy", _negative_mask))),
        ("ds/masks/s1.npy: negative labels -1",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "RGB colour mask",
        _check(
            _with(_put("masks/s1.png", lambda p: png(p, np.resize(_colour_mask(), (16, 16, 3)))))
        ),
        ("ds/masks/s1.png", "different channels"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "anti-aliased / JPEG-like 0/255 mask",
        _check(
            lambda r: (dataset(r, size=(32, 32)), png(r / "masks" / "s1.png", jpeg_like_mask())),
        ),
        ("ds/masks/s1.png: looks like an anti-aliased or JPEG-compressed",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "an intensity image as mask",
        _check(_with(_put("masks/s1.png", lambda p: png(p, image_array())))),
        ("ds/masks/s1.png", "distinct values", "not a label mask"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "images with differing channel counts",
        _check(_with(_put("images/s1.png", lambda p: png(p, np.stack([image_array()] * 3, -1))))),
        ("different channel counts: 1 (1 files), 3 (1 files)", "ds/images/"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "2D and 3D images mixed",
        _check(
            _with(
                _rm("images/s1.png"),
                _rm("masks/s1.png"),
                _put("images/s1.npy", lambda p: npy(p, np.ones((4, 16, 16), np.float32))),
                _put("masks/s1.npy", lambda p: npy(p, np.zeros((4, 16, 16), np.int64))),
            )
        ),
        ("different numbers of spatial dims: 2D", "3D (e.g."),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "a truncated image among good ones",
        _check(
            _with(_put("images/s1.png", _write_bytes(truncated(png_bytes(image_array((16, 16)))))))
        ),
        ("ds/images/s1.png",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "decompression bomb in the dataset",
        _check(_bomb_dataset),
        ("ds/images/s0.png", "exceeds the limit"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "NaN pixels in an image",
        _check(_with(_rm("images/s1.png"), _put("images/s1.tif", _float_image_16(np.nan)))),
        ("ds/images/s1.tif", "NaN or infinite"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "every mask is background",
        _check(_only_background, "warning"),
        ("every mask is background",),
        kind="warning",
    ),
    ApiCase(
        "dataset",
        "a stray non-image file",
        _check(_with(_put("images/readme.txt", _write_bytes(b"hi"))), "warning"),
        ("ds/images/readme.txt: ignored",),
        kind="warning",
    ),
    ApiCase(
        "dataset",
        "load_dataset of a broken dataset (one line, first problems)",
        _load(_with(_rm("masks/s1.png"))),
        ("ds: 1 problem(s)", "unetkit check-data"),
        raises=DataError,
    ),
    ApiCase(
        "dataset",
        "bad num_classes argument",
        _check(dataset, num_classes=0),
        ("num_classes", "positive integer"),
        raises=ValueError,
    ),
]

# NIfTI: geometry that cannot be used (cases_nifti.py holds the builders)
CASES += cases_nifti.DATASET_CASES
