"""``predict_instances`` through the tiling, and ``predict --instances`` files in 3D."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unetkit.infer.instance_files import predict_instance_files
from unetkit.infer.instances import predict_instances
from unetkit.infer.predictor import PredictOptions
from unetkit.instances.spec import InstanceSpec
from unetkit.io.images import read_mask, write_image
from unetkit.model import UNet, UNetConfig


def _constant_model(spatial_dims: int, bias: tuple[float, float, float]) -> UNet:
    """A U-Net whose three outputs are ``bias`` everywhere (all weights zero)."""
    model = UNet(UNetConfig(spatial_dims=spatial_dims, widths=(4, 8), norm="none", out_channels=3))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        last = [m for m in model.modules() if getattr(m, "bias", None) is not None][-1]
        last.bias.copy_(torch.tensor(bias))
    return model.eval()


META = {"instances": InstanceSpec().to_dict()}


def test_an_object_across_every_tile_border_keeps_one_id() -> None:
    model = _constant_model(2, (0.0, 5.0, 0.0))  # interior everywhere: one object
    image = np.random.default_rng(0).random((1, 48, 40)).astype(np.float32)
    tiled = predict_instances(model, image, tile=[16, 16], metadata=META)
    assert tiled.labels.max() == 1 and (tiled.labels == 1).all()  # 9+ tiles, one id
    assert (tiled.class_map == 1).all()
    empty = predict_instances(_constant_model(2, (5.0, 0.0, 0.0)), image, metadata=META)
    assert empty.labels.max() == 0


def test_predict_instance_files_writes_tiff_and_volume_table_in_3d(tmp_path: Path) -> None:
    model = _constant_model(3, (0.0, 5.0, 0.0))
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "vol.tif", np.random.default_rng(1).random((1, 12, 16, 16)) * 100)
    results = predict_instance_files(
        model, META, [src], tmp_path / "out", options=PredictOptions(tile=[8, 8, 8])
    )
    (r,) = results
    assert r.status == "predicted" and r.objects == 1
    assert r.outputs.labels.name == "vol_instances.tif"
    labels = read_mask(r.outputs.labels)
    assert labels.shape == (12, 16, 16) and labels.max() == 1
    header, row = (tmp_path / "out" / "vol_objects.csv").read_text().splitlines()
    assert header.startswith("id,class,volume,centroid_z,centroid_y,centroid_x")
    assert row.startswith("1,1,3072,5.5,7.5,7.5")
