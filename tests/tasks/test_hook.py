"""The task hook: the trainer asks the task for input/target, loss and the "best" score."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from unetkit.config import DataConfig, RunConfig, TrainConfig
from unetkit.model import UNet, UNetConfig
from unetkit.tasks import make_objective
from unetkit.tasks.segment import SegmentObjective
from unetkit.train.distributed import DistInfo
from unetkit.train.prepare import prepare_data
from unetkit.train.progress import epoch_line, epoch_row
from unetkit.train.step import TrainForward
from unetkit.train.validate import ValResult


def _config(task: str = "segment") -> RunConfig:
    return RunConfig(
        model=UNetConfig(widths=(4, 8)),
        data=DataConfig(synthetic_count=4, synthetic_size=32, patch_size=(32, 32)),
        train=TrainConfig(batch_size=2),
        task=task,  # type: ignore[arg-type]
    )


def test_segment_objective_passes_the_batch_through_and_scores_by_dice() -> None:
    config = _config()
    prepared = prepare_data(config.data)
    objective = make_objective(config, prepared, DistInfo())
    assert isinstance(objective, SegmentObjective) and objective.score_name == "dice"
    raw = objective.batches.batch(0, 0)
    batch = objective.inputs(raw)
    assert batch.inputs is raw.images and batch.target is raw.masks and batch.conditioning == {}
    model = UNet(UNetConfig(widths=(4, 8), out_channels=prepared.num_classes))
    loss = objective.loss(model(batch.inputs), batch)
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    val = objective.validate(model, prepared.val, DistInfo())
    assert val.score == val.mean_dice and val.extra == {}
    assert objective.metadata() == {}


def test_a_task_not_built_is_refused_by_name() -> None:
    config = _config("diffusion")
    with pytest.raises(ValueError, match="task=diffusion"):
        make_objective(config, prepare_data(config.data), DistInfo())


def _val(**changes: object) -> ValResult:
    base = ValResult(
        loss=0.5,
        dice=np.array([0.9, 0.4]),
        iou=np.array([0.8, 0.3]),
        mean_dice=0.4,
        mean_iou=0.3,
        predictions=[],
    )
    return dataclasses.replace(base, **changes)


def test_score_is_the_dice_unless_the_task_names_another() -> None:
    assert _val().score == 0.4
    restore = _val(
        dice=np.array([]),
        iou=np.array([]),
        mean_dice=math.nan,
        mean_iou=math.nan,
        extra={"val_psnr": 31.5},
        best_score=31.5,
    )
    assert restore.score == 31.5


def test_epoch_rows_and_lines_carry_the_task_columns() -> None:
    seg = epoch_row(1, 3, 0.7, _val(), 1e-3, 2.0, ("bg", "cell"), partial=False)
    assert seg["dice_cell"] == 0.4 and "val_dice 0.4000" in epoch_line(seg, 3, 9)
    restore = _val(
        dice=np.array([]),
        iou=np.array([]),
        mean_dice=math.nan,
        mean_iou=math.nan,
        extra={"val_psnr": 31.5, "val_ssim": 0.8},
        best_score=31.5,
    )
    row = epoch_row(1, 3, 0.7, restore, 1e-3, 2.0, ("0",), partial=False)
    line = epoch_line(row, 3, 9)
    assert row["val_psnr"] == 31.5 and "dice_0" not in row
    assert "val_psnr 31.5000  val_ssim 0.8000" in line and "val_dice" not in line


def test_train_forward_hands_conditioning_to_the_model() -> None:
    seen = {}

    class Conditioned(UNet):
        def forward(self, x, **kw):  # type: ignore[override]
            seen.update(kw)
            return super().forward(x)

    fwd = TrainForward(Conditioned(UNetConfig(widths=(4, 8))))
    x = torch.zeros(1, 1, 16, 16)
    fwd(x, t=torch.ones(1))
    assert set(seen) == {"t"}
    seen.clear()
    fwd(x)
    assert seen == {}
