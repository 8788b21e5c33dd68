"""RunConfig: YAML round trip, overrides, errors naming the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.config import RunConfig, TrainConfig, load_run_config
from unetkit.configtools import ConfigValueError


def test_yaml_round_trip_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\nmodel:\n  widths: [8, 16, 32]\n")
    config = load_run_config(path, ["data.patch_size=[64,64]", "train.loss=focal"])
    assert config.train.lr == 0.01 and config.model.widths == (8, 16, 32)
    assert config.data.patch_size == (64, 64) and config.train.loss == "focal"
    again = tmp_path / "again.yaml"
    again.write_text(config.to_yaml())
    assert load_run_config(again) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "train.lrr: unknown setting"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("train.lr=-1", "lr: expected a positive number"),
        ("train.loss=hinge", "train.loss: 'hinge' is not one of"),
        ("data.val_fraction=1.5", "val_fraction"),
        ("model.widths=[]", "widths"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigValueError, match=message):
        load_run_config(None, [override])


def test_defaults_are_valid() -> None:
    assert RunConfig().train == TrainConfig()
