"""The instance spec stored with a model, and predict_instances on the stitched probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.errors import ModelFileError, UnetkitError
from unetkit.infer.instances import predict_instances
from unetkit.instances import InstanceParams
from unetkit.instances.spec import KEY, InstanceSpec
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import save


def _constant_model(logits: tuple[float, float, float]) -> UNet:
    """A 3-output U-Net whose output is the given logits everywhere (head weights zeroed)."""
    model = UNet(UNetConfig(widths=(4, 8), in_channels=1, out_channels=3)).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(logits))
    return model


def test_spec_round_trip_and_checks() -> None:
    spec = InstanceSpec(width=1, border="contour", params=InstanceParams(seed_threshold=0.6))
    assert InstanceSpec.from_metadata({KEY: spec.to_dict()}, "m") == spec
    assert InstanceSpec.from_metadata({}, "m") is None
    with pytest.raises(ModelFileError, match=r"^m\.safetensors: .*'instances'.*unknown key"):
        InstanceSpec.from_metadata({KEY: {"widht": 2}}, "m.safetensors")
    with pytest.raises(ModelFileError, match="seed_threshold"):
        InstanceSpec.from_metadata({KEY: {"params": {"seed_threshold": 3}}}, "m")
    with pytest.raises(ValueError, match="channels"):
        InstanceSpec(channels=(0, 1, 1))
    with pytest.raises(ValueError, match="channels"):
        InstanceSpec(channels=(0, 1, 3))


def test_class_map_and_boundary_channels() -> None:
    spec = InstanceSpec(channels=(3, 1, 2), class_of_channel=(0, 2, 2, 0))
    probs = np.zeros((4, 2, 2), dtype=np.float32)
    probs[1, 0, 0] = probs[2, 0, 1] = probs[3, 1, :] = 1.0
    np.testing.assert_array_equal(spec.class_map(probs), [[2, 2], [0, 0]])
    np.testing.assert_array_equal(spec.boundary_probabilities(probs)[0], probs[3])
    with pytest.raises(ValueError, match="4 channels"):
        spec.class_map(probs[:3])


def test_one_object_across_tiles() -> None:
    # interior everywhere: the whole 96 x 96 image is one object, though it is predicted in
    # 32 x 32 tiles; post-processing per tile would give one id per tile
    model = _constant_model((0.0, 6.0, 0.0))
    image = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    meta = {KEY: InstanceSpec().to_dict()}
    out = predict_instances(model, image, metadata=meta, tile=32, precision="fp32")
    assert out.labels.dtype == np.uint16
    assert int(out.labels.max()) == 1 and (out.labels == 1).all()
    assert (out.class_map == 1).all()
    assert out.params == InstanceParams()
    # the parameters can be overridden: objects under 10^4 px are removed
    none = predict_instances(
        model, image, metadata=meta, tile=32, params=InstanceParams(min_size=10_000)
    )
    assert int(none.labels.max()) == 0


def test_model_without_instance_target(tmp_path: Path) -> None:
    model = _constant_model((0.0, 6.0, 0.0))
    path = save(model, tmp_path / "plain.safetensors", {})
    image = np.zeros((40, 40), dtype=np.float32)
    with pytest.raises(UnetkitError, match=r"plain\.safetensors was trained without an instance"):
        predict_instances(path, image)
    out = predict_instances(path, image, fallback="components")
    assert out.params is None and int(out.labels.max()) == 1  # class 1 everywhere: one blob


def test_saved_model_with_spec(tmp_path: Path) -> None:
    model = _constant_model((6.0, 0.0, 0.0))  # background everywhere
    path = save(model, tmp_path / "inst.safetensors", {KEY: InstanceSpec().to_dict()})
    out = predict_instances(path, np.zeros((1, 24, 24), dtype=np.float32))
    assert out.labels.shape == (24, 24) and int(out.labels.max()) == 0
