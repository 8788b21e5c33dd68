"""Integer images stay integer until a tile is normalised: same labels, a quarter of the memory."""

from __future__ import annotations

import numpy as np
import torch

import unetkit
from unetkit.infer.files import predict_files, read_input
from unetkit.io.images import read_image, read_mask, write_image
from unetkit.model import UNet, UNetConfig


def test_an_8bit_png_is_read_as_uint8_for_prediction(tmp_path) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(1, 37, 45), dtype=np.uint8)
    write_image(tmp_path / "a.png", image)
    kept = read_input(tmp_path / "a.png", 2)
    assert kept.dtype == np.uint8 and np.array_equal(kept, image)
    assert read_image(tmp_path / "a.png").dtype == np.float32  # the default is unchanged


def test_files_of_integers_predict_the_labels_of_their_float_values(tmp_path) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(4, 8), in_channels=1, out_channels=3)).eval()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(1, 40, 52), dtype=np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 256, size=(1, 30, 33), dtype=np.uint8))  # another size
    src = tmp_path / "in"
    for i, im in enumerate(images):
        write_image(src / f"im{i}.png", im)
    predict_files(model, {}, [src], tmp_path / "out")
    for i, im in enumerate(images):
        want = np.asarray(unetkit.predict(model, im.astype(np.float32), precision="fp32"))
        got = read_mask(tmp_path / "out" / f"im{i}.png")
        assert np.array_equal(got, want)
