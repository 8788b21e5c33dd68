"""Model files: safetensors with the config inside; no pickle; corrupt and foreign files."""

from __future__ import annotations

import pytest
import torch

from tests import model_cases
from unetkit import UNet, UNetConfig, load, save
from unetkit.errors import ModelFileError
from unetkit.modelfile import import_state_dict, load_with_metadata


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(widths=(4, 8, 16), norm="batch"),
        UNetConfig(
            spatial_dims=3,
            widths=(2, 4),
            norm={"type": "group", "groups": 2},
            padding="valid",
            block="residual",
        ),
        UNetConfig(spatial_dims=1, widths=(4, 8, 16), deep_supervision=True, fusion="concat_1x1"),
    ],
)
def test_save_load_gives_identical_output_and_config(tmp_path, config: UNetConfig) -> None:
    torch.manual_seed(0)
    model = UNet(config)
    model.train()
    n = model.valid_input_sizes(8, 64)[0] if config.padding == "valid" else 19
    model(torch.randn(2, 1, *((n,) * config.spatial_dims)))  # move BN running stats
    model.eval()
    path = save(model, tmp_path / "m.safetensors", metadata={"num_classes": 2})
    loaded, extra = load_with_metadata(path)
    assert loaded.config == config
    assert extra == {"num_classes": 2}
    x = torch.randn(1, 1, *((n,) * config.spatial_dims))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not loaded.training


@pytest.mark.parametrize("case", model_cases.cases(dims=(2,)))
def test_every_case_saves_and_loads_to_identical_output(tmp_path, case) -> None:
    model = model_cases.make_model(case, settled=True)
    loaded = load(save(model, tmp_path / "m.safetensors"))
    assert loaded.config == model.config
    x = model_cases.make_input(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", model_cases.PRESETS)
def test_every_preset_config_round_trips_through_a_model_file(name: str) -> None:
    import dataclasses
    import json

    from unetkit.model import preset_config
    from unetkit.modelfile import config_from_json

    config = preset_config(name)  # as save() stores it
    assert config_from_json(json.dumps(dataclasses.asdict(config)), "m") == config


def test_a_config_saved_before_encoder_blocks_existed_loads_unchanged() -> None:
    from unetkit.modelfile import config_from_json

    old = (
        '{"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "widths": [4, 8], '
        '"kernel_size": 3, "convs_per_block": 2, "padding": "same", "down": "maxpool", '
        '"up": "transpose", "fusion": "concat", "norm": "batch", "norm_placement": '
        '"after_concat", "act": "relu", "block": "plain", "dropout": 0.0, "init": "kaiming", '
        '"checkpointing": "off", "deep_supervision": false}'
    )
    config = config_from_json(old, "old.safetensors")
    assert config == UNetConfig(widths=(4, 8)) and config.encoder_blocks is None
    keys = list(UNet(config).state_dict())
    assert "encoder.blocks.1.convs.0.conv.weight" in keys


def test_pickles_are_refused_with_an_explanation(tmp_path) -> None:
    model = UNet(UNetConfig(widths=(4, 8)))
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelFileError, match="pickle"):
        load(path)
    with pytest.raises(ModelFileError, match="trusted"):
        import_state_dict(path, model.config)
    imported = import_state_dict(path, model.config, trusted=True)
    for a, b in zip(imported.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_corrupt_and_truncated_files_are_reported(tmp_path) -> None:
    path = save(UNet(UNetConfig(widths=(4, 8))), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.safetensors"
    data[-10] ^= 0xFF
    flipped.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load(flipped)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load(truncated)


def test_weights_of_another_architecture_name_the_shapes(tmp_path) -> None:
    from safetensors.torch import load_file

    from unetkit.modelfile import load_state_into

    path = save(UNet(UNetConfig(widths=(4, 8), out_channels=3)), tmp_path / "m.safetensors")
    other = UNet(UNetConfig(widths=(4, 8), out_channels=2))
    with pytest.raises(ModelFileError, match=r"head\.weight: file \(3, 4, 1, 1\) vs model"):
        load_state_into(other, load_file(path), str(path))


def test_run_folder_resolves_to_its_model(tmp_path) -> None:
    model = UNet(UNetConfig(widths=(4, 8)))
    save(model, tmp_path / "model.safetensors")
    assert load(tmp_path).config == model.config
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(ModelFileError, match=r"has no model\.safetensors"):
        load(empty)
