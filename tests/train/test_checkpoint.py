"""Checkpoints: optimiser, scheduler and RNG states survive a round trip; damage is detected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.errors import ModelFileError
from unetkit.model import UNet, UNetConfig
from unetkit.train.checkpoint import TrainState, load_latest, read_checkpoint, write_checkpoint
from unetkit.train.schedule import make_optimizer, make_scheduler


def _setup() -> tuple[UNet, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(4, 8)))
    opt = make_optimizer(model.parameters(), "adamw", 1e-2, 1e-4, 0.9)
    sched = make_scheduler(opt, 10, 2, "poly")
    for _ in range(3):
        loss = model(torch.randn(2, 1, 16, 16)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_round_trip_restores_everything(tmp_path: Path) -> None:
    model, opt, sched = _setup()
    np.random.seed(5)
    torch.manual_seed(9)
    state = TrainState(epoch=1, step=3, best_dice=0.5, best_epoch=1, history=[{"epoch": 1}])
    write_checkpoint(tmp_path / "last", model, {"num_classes": 2}, opt, sched, state)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    ckpt = read_checkpoint(tmp_path / "last")
    assert ckpt.state.step == 3 and ckpt.state.history == [{"epoch": 1}]
    model2, opt2, sched2 = _setup()
    opt2.load_state_dict(ckpt.optimizer)
    sched2.load_state_dict(ckpt.scheduler)
    for group_a, group_b in zip(opt.param_groups, opt2.param_groups, strict=True):
        assert group_a["lr"] == group_b["lr"]
    for p_a, p_b in zip(model.parameters(), model2.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p_a][key], opt2.state[p_b][key]), key
    assert sched2.last_epoch == sched.last_epoch == 3
    from unetkit.train.checkpoint import set_rng_states

    set_rng_states(ckpt.rng_tensors, ckpt.rng_meta)
    assert torch.equal(torch.rand(3), expected_torch)
    assert np.array_equal(np.random.rand(3), expected_np)


def test_damaged_checkpoints_are_refused(tmp_path: Path) -> None:
    model, opt, sched = _setup()
    write_checkpoint(tmp_path / "last", model, {}, opt, sched, TrainState())
    weights = tmp_path / "last" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip one bit of the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        read_checkpoint(tmp_path / "last")
    with pytest.raises(ModelFileError, match="no usable checkpoint"):
        load_latest(tmp_path)


def test_a_stale_moved_aside_copy_never_outlives_the_next_write(tmp_path: Path) -> None:
    """A kill between the two renames leaves ``.last.old``; it is read while it is the only
    copy and deleted once a new ``last/`` is complete (it must not shadow newer checkpoints)."""
    model, opt, sched = _setup()
    write_checkpoint(tmp_path / "last", model, {}, opt, sched, TrainState(epoch=1, step=3))
    (tmp_path / "last").rename(tmp_path / ".last.old")  # as left by the kill
    assert load_latest(tmp_path).folder.name == ".last.old"
    write_checkpoint(tmp_path / "last", model, {}, opt, sched, TrainState(epoch=2, step=6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert load_latest(tmp_path).state.epoch == 2


def test_stale_temporaries_are_removed_and_complete_files_kept(tmp_path: Path) -> None:
    from unetkit.train.checkpoint import remove_stale_temporaries

    (tmp_path / ".last.abc.tmp").mkdir()
    (tmp_path / ".last.abc.tmp" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".model.safetensors.x1.tmp").write_bytes(b"half")
    (tmp_path / "checkpoints" / ".epoch.y2.tmp").mkdir(parents=True)
    (tmp_path / "model.safetensors").write_bytes(b"complete")
    (tmp_path / "notes.tmp").write_bytes(b"the user's")  # not one of ours: no leading dot
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".epoch.y2.tmp",
        ".last.abc.tmp",
        ".model.safetensors.x1.tmp",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoints",
        "model.safetensors",
        "notes.tmp",
    ]
