"""``unetkit.predict_images``: many images, the labels of ``unetkit.predict`` one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import unetkit
from tests.infer.block_cases import small_model, smooth_image
from unetkit.errors import DataError
from unetkit.modelfile import save


def test_many_images_get_the_labels_of_one_by_one(tmp_path: Path) -> None:
    """Small images of two shapes share network calls, a large one is tiled, a 2-channel
    image is refused by its index; a model file's metadata (normalisation) is used."""
    model = small_model(padding="same", out_channels=3)
    images = [smooth_image((40, 52), seed) for seed in range(5)]
    images += [smooth_image((24, 24), 9), smooth_image((300, 200), 10)]
    images.insert(2, smooth_image((24, 24), 11))
    got = unetkit.predict_images(model, images, batch_size=2, tile=128)
    assert len(got) == len(images)
    for im, labels in zip(images, got, strict=True):
        np.testing.assert_array_equal(labels, unetkit.predict(model, im, tile=128))
    meta = {"normalization": {"mode": "dataset", "mean": [0.3], "std": [2.0]}}
    save(model, tmp_path / "m.safetensors", metadata=meta)
    from_file = unetkit.predict_images(tmp_path / "m.safetensors", images[:3])
    for im, labels in zip(images[:3], from_file, strict=True):
        np.testing.assert_array_equal(labels, unetkit.predict(tmp_path / "m.safetensors", im))
    with pytest.raises(DataError, match=r"images\[1\]"):
        unetkit.predict_images(model, [images[0], np.zeros((2, 3, 40, 52), np.float32)])
