"""Fine-tuning (``--init-from``): the trained weights are the start, a new head only where the
classes differ, the encoder stays put while frozen, and a model that does not fit is refused
by name before anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.config import load_run_config
from unetkit.errors import UnetkitError
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import read_tensors, save
from unetkit.train.finetune import FINETUNE_LR_FACTOR, load_init_weights, set_encoder_frozen
from unetkit.workflow import fit

TINY = [
    "data.synthetic_count=6",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.threads=1",
    "train.epochs=1",
    "train.int8_calibration=false",
]


def _trained(path: Path, **config: object) -> Path:
    torch.manual_seed(1)
    model = UNet(UNetConfig(**{"widths": (4, 8), **config}))  # type: ignore[arg-type]
    return save(model, path)


def _three_class_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(6):
        mask = np.zeros((32, 32), np.uint8)
        mask[4:14, 4:14] = 1
        mask[18:28, 16:30] = 2
        image = (mask * 60 + rng.normal(40, 10, mask.shape)).astype(np.float32)
        np.save(root / "images" / f"im{i}.npy", image)
        np.save(root / "masks" / f"im{i}.npy", mask)
    return root


def _encoder_params(tensors: dict[str, torch.Tensor], model: UNet) -> dict[str, torch.Tensor]:
    names = {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    return {k: v for k, v in tensors.items() if k in names}


def test_same_classes_start_from_every_tensor_and_a_frozen_encoder_stays(tmp_path: Path) -> None:
    init = _trained(tmp_path / "a.safetensors")
    said: list[str] = []
    overrides = [*TINY, "train.freeze_encoder_steps=100"]
    fit(None, tmp_path / "run", overrides=overrides, init_from=init, echo=said.append)
    start, _ = read_tensors(init)
    end, _ = read_tensors(tmp_path / "run" / "last" / "model.safetensors")
    model = UNet(UNetConfig(widths=(4, 8)))
    enc_start, enc_end = _encoder_params(start, model), _encoder_params(end, model)
    assert enc_start and all(torch.equal(enc_start[k], enc_end[k]) for k in enc_start)
    assert not torch.equal(start["head.weight"], end["head.weight"])  # the rest trained
    assert any(line.startswith("init: all") for line in said)
    config = load_run_config(tmp_path / "run" / "config.yaml")
    assert config.train.init_from == str(init.resolve())
    assert config.model.widths == (4, 8)  # the trained architecture, not the recipe's
    assert config.train.lr == pytest.approx(3e-3 * FINETUNE_LR_FACTOR)


def test_other_classes_get_a_new_head_and_the_run_says_so(tmp_path: Path) -> None:
    init = _trained(tmp_path / "a.safetensors")  # 2 classes
    data = _three_class_dataset(tmp_path / "ds")
    said: list[str] = []
    overrides = [t for t in TINY if not t.startswith("data.synthetic")]
    fit(None, tmp_path / "run", overrides=[*overrides, f"data.path={data}", "train.lr=0.01"],
        init_from=init, echo=said.append)  # fmt: skip
    note = next(line for line in said if line.startswith("init: "))
    assert "re-initialised head.weight, head.bias (2 -> 3 output channels)" in note
    assert not any(line.startswith("recipe: fine-tuning lr") for line in said)  # lr was given
    assert load_run_config(tmp_path / "run" / "config.yaml").train.lr == 0.01


def test_load_init_weights_copies_all_but_a_mismatched_head(tmp_path: Path) -> None:
    init = _trained(tmp_path / "a.safetensors", out_channels=2)
    torch.manual_seed(5)
    model = UNet(UNetConfig(widths=(4, 8), out_channels=4))
    head_before = model.head.weight.detach().clone()
    fresh = load_init_weights(model, init)
    start, _ = read_tensors(init)
    assert fresh == ["head.weight", "head.bias"]
    assert torch.equal(model.head.weight, head_before)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in start.items() if k not in fresh)


def test_set_encoder_frozen_toggles_only_the_encoder() -> None:
    model = UNet(UNetConfig(widths=(4, 8)))
    set_encoder_frozen(model, True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    set_encoder_frozen(model, False)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ({"in_channels": 2}, [], "channels 1 in the images vs 2 in the model"),
        ({"spatial_dims": 3}, [], "spatial dims 2D data vs 3D model"),
        ({}, ["model.widths=[8,16]"], "architecture differs: widths [8, 16] here vs [4, 8]"),
    ],
)
def test_a_model_that_does_not_fit_is_refused_before_anything_is_written(
    tmp_path: Path, config: dict, overrides: list[str], message: str
) -> None:
    init = _trained(tmp_path / "a.safetensors", **config)
    with pytest.raises(UnetkitError, match="--init-from") as err:
        fit(None, tmp_path / "run", overrides=[*TINY, *overrides], init_from=init, quiet=True)
    assert message in str(err.value)
    assert not (tmp_path / "run").exists()
