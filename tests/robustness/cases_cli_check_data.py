"""`unetkit check-data DIR` on bad datasets: the report line and exit status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import (
    _check_data,
    _cli_dataset,
    _colour_mask,
    _empty_dirs,
    _float_image_16,
    _labels,
    _only_background,
    _put,
    _rm,
    _tiff_truncated,
    _write_bytes,
    bomb_png,
    image_array,
    jpeg_bytes,
    jpeg_like_mask,
    mask_array,
    npy,
    png,
    png_bytes,
    truncated,
)
from catalogue_kit import CliCase


def _mask_0_65535(path: Path) -> object:
    m = np.zeros((16, 16), np.uint16)
    m[2:8, 3:9] = 65535
    return png(path, m)


CASES: list[CliCase] = [
    CliCase(
        "cli check-data",
        "folder does not exist",
        _check_data(lambda t: None),
        ("ds: not a folder",),
        stream="stdout",
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "empty images/ and masks/",
        _check_data(lambda t: _empty_dirs(t / "ds")),
        ("ds/images: no images",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "image without a mask",
        _check_data(_cli_dataset(_rm("masks/s1.png"))),
        ("ds/images/s1.png: no mask with stem 's1'",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "mask without an image",
        _check_data(_cli_dataset(_rm("images/s1.png"))),
        ("ds/masks/s1.png: no image with stem 's1'",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "image and mask sizes differ",
        _check_data(_cli_dataset(_put("masks/s1.png", lambda p: png(p, mask_array((16, 12)))))),
        ("ds/masks/s1.png: mask size 16x12 differs",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "labels outside the classes",
        _check_data(_cli_dataset(_put("masks/s1.png", _labels((3, 7)))), "--num-classes", "2"),
        ("ds/masks/s1.png: labels 3, 7 are outside 0..1",),
        stream="stdout",
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "RGB colour mask",
        _check_data(
            _cli_dataset(
                _put("masks/s1.png", lambda p: png(p, np.resize(_colour_mask(), (16, 16, 3))))
            )
        ),
        ("ds/masks/s1.png: mask has 3 different channels",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "JPEG-like 0/255 mask",
        _check_data(
            _cli_dataset(_put("masks/s1.png", lambda p: png(p, jpeg_like_mask())), size=(32, 32))
        ),
        ("ds/masks/s1.png: looks like an anti-aliased or JPEG-compressed",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "differing channel counts",
        _check_data(
            _cli_dataset(_put("images/s1.png", lambda p: png(p, np.stack([image_array()] * 3, -1))))
        ),
        ("images have different channel counts",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "truncated image",
        _check_data(
            _cli_dataset(_put("images/s1.png", _write_bytes(truncated(png_bytes(image_array())))))
        ),
        ("ds/images/s1.png",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "truncated TIFF (no stray log lines)",
        _check_data(_cli_dataset(_rm("images/s1.png"), _put("images/s1.tif", _tiff_truncated))),
        ("ds/images/s1.tif: cannot decode TIFF",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "content does not match extension",
        _check_data(_cli_dataset(_put("images/s1.png", _write_bytes(jpeg_bytes(image_array()))))),
        ("ds/images/s1.png: extension '.png' but the content is JPEG",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "decompression bomb",
        _check_data(_cli_dataset(_put("images/s1.png", bomb_png))),
        ("ds/images/s1.png: 10000000000 pixels exceeds the limit",),
        stream="stdout",
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "image over --max-pixels",
        _check_data(_cli_dataset(), "--max-pixels", "100"),
        ("256 pixels exceeds the limit of 100",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "bad UNETKIT_MAX_PIXELS",
        _check_data(_cli_dataset()),
        ("UNETKIT_MAX_PIXELS='lots' is not a positive integer",),
        env={"UNETKIT_MAX_PIXELS": "lots"},
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "NaN pixels",
        _check_data(
            _cli_dataset(_rm("images/s1.png"), _put("images/s1.tif", _float_image_16(np.inf)))
        ),
        ("ds/images/s1.tif: 1 pixel value(s) are NaN or infinite",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "float64 values too large for float32 (no stray warnings)",
        _check_data(
            _cli_dataset(
                _rm("images/s1.png"),
                _put("images/s1.npy", lambda p: npy(p, np.full((16, 16), 1e300))),
            )
        ),
        ("ds/images/s1.npy: 256 pixel value(s) are NaN or infinite (or too large",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "3D volume with --spatial-dims 2",
        _check_data(
            _cli_dataset(
                _rm("images/s1.png"),
                _put("images/s1.npy", lambda p: npy(p, np.ones((2, 4, 16, 16), np.float32))),
            ),
            "--spatial-dims",
            "2",
        ),
        ("ds/images/s1.npy: holds a 3D image with 2 channels",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "every mask is background (warning, exit 0)",
        _check_data(lambda t: _only_background(t / "ds")),
        ("every mask is background",),
        code=0,
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "--num-classes 0",
        _check_data(_cli_dataset(), "--num-classes", "0"),
        ("--num-classes: expected a positive integer, got 0",),
    ),
    CliCase(
        "cli check-data",
        "0/65535 mask (not 65,536 classes)",
        _check_data(_cli_dataset(_put("masks/s1.png", _mask_0_65535))),
        ("ds/masks/s1.png: labels 0, 65535 are not a class map",),
        stream="stdout",
    ),
    # dataset.yaml (the author's declaration): one line each, the report says NOT OK
    CliCase(
        "cli check-data",
        "dataset.yaml is not valid YAML",
        _check_data(_cli_dataset(_put("dataset.yaml", _write_bytes(b"class_names: [a, b\n")))),
        ("ds/dataset.yaml: not valid YAML",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "dataset.yaml with an unknown key",
        _check_data(_cli_dataset(_put("dataset.yaml", _write_bytes(b"classes: [a, b]\n")))),
        ("ds/dataset.yaml: unknown key(s) classes",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "dataset.yaml ignore label out of range",
        _check_data(
            _cli_dataset(
                _put("dataset.yaml", _write_bytes(b"class_names: [bg, cell]\nignore_index: 5\n"))
            )
        ),
        ("ds/dataset.yaml: ignore_index: 5 is out of range for 2 class names",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "dataset.yaml names fewer classes than the masks hold",
        _check_data(
            _cli_dataset(
                _put("dataset.yaml", _write_bytes(b"class_names: [bg, cell]\n")),
                _put("masks/s1.png", _labels((2,))),
            )
        ),
        ("ds/dataset.yaml: class_names has 2 names (labels 0..1) but masks hold larger",),
        stream="stdout",
    ),
]
