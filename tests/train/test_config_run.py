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


def test_one_spatial_dims_and_old_synthetic_dims_still_loads(tmp_path: Path) -> None:
    from dataclasses import fields

    from unetkit.config import DataConfig
    from unetkit.train.prepare import prepare_data

    assert [f.name for f in fields(DataConfig)].count("spatial_dims") == 1
    assert "synthetic_dims" not in {f.name for f in fields(DataConfig)}
    old = tmp_path / "config.yaml"
    old.write_text("data:\n  synthetic_dims: 3\n  synthetic_count: 2\n  synthetic_size: 8\n")
    config = load_run_config(old)
    assert config.data.spatial_dims == 3
    assert prepare_data(config.data).spatial_dims == 3  # the synthetic data is 3D
    # with a dataset folder the old key never had an effect; it is dropped
    old.write_text("data:\n  path: somewhere\n  synthetic_dims: 3\n")
    assert load_run_config(old).data.spatial_dims is None
    assert load_run_config(None, ["data.synthetic_dims=1"]).data.spatial_dims == 1
    assert "synthetic_dims" not in RunConfig().to_yaml()
    # synthetic data follows data.spatial_dims, 2D when unset
    assert prepare_data(DataConfig(synthetic_count=2, synthetic_size=8)).spatial_dims == 2
    one_d = DataConfig(synthetic_count=2, synthetic_size=16, spatial_dims=1)
    assert prepare_data(one_d).spatial_dims == 1


def test_the_three_config_modules_say_why_they_exist() -> None:
    import unetkit.config
    import unetkit.configtools
    import unetkit.model.config

    for module in (unetkit.config, unetkit.configtools, unetkit.model.config):
        first_lines = "\n".join((module.__doc__ or "").splitlines()[:8])
        assert "Why this module exists" in first_lines, module.__name__
