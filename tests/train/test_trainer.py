"""The trainer on tiny synthetic data: learning, exact resume, NaN handling, the run folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.config import DataConfig, RunConfig, TrainConfig, load_run_config
from unetkit.data.augment import AugmentConfig
from unetkit.model import UNetConfig
from unetkit.modelfile import load_with_metadata, read_tensors
from unetkit.train.checkpoint import load_latest
from unetkit.train.distributed import DistInfo
from unetkit.train.prepare import prepare_data
from unetkit.train.trainer import NonFiniteLossError, train


def tiny_config(**train_changes: object) -> RunConfig:
    """A 2-level U-Net on 6 synthetic 32x32 images: a few steps take well under a second."""
    return RunConfig(
        model=UNetConfig(widths=(4, 8), norm="batch"),
        data=DataConfig(
            synthetic_count=6,
            synthetic_size=32,
            patch_size=(32, 32),
            augment=AugmentConfig(p_elastic=0.5),
        ),
        train=dataclasses.replace(
            TrainConfig(
                epochs=4,
                steps_per_epoch=3,
                batch_size=2,
                lr=1e-2,
                deterministic=True,
                channels_last=False,
                overlays=1,
            ),
            **train_changes,
        ),
    )


def run(config: RunConfig, out: Path, **kwargs: object):
    prepared = prepare_data(config.data, seed=config.train.seed)
    return train(config, prepared, out, DistInfo(), quiet=True, **kwargs)


def test_a_few_steps_lower_the_loss(tmp_path: Path) -> None:
    result, _ = run(tiny_config(epochs=5, steps_per_epoch=4, schedule="constant"), tmp_path)
    rows = json.loads(json.dumps(load_latest(tmp_path).state.history))
    assert result.stopped == "finished" and result.steps == 20
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]


def test_run_folder_contents_and_metadata(tmp_path: Path) -> None:
    config = tiny_config(epochs=2)
    run(config, tmp_path)
    for name in ("config.yaml", "model.safetensors", "metrics.csv", "progress.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "last" / "model.safetensors").is_file()
    assert (tmp_path / "last" / "state.safetensors").is_file()
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 1
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["epoch", "step", "train_loss", "val_loss", "val_dice"]
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3
    model, extra = load_with_metadata(tmp_path)
    assert model.config.widths == (4, 8)
    assert extra["num_classes"] == 2 and extra["in_channels"] == 1
    assert extra["spatial_dims"] == 2 and extra["patch_size"] == [32, 32]
    assert extra["normalization"]["mode"] == "per_image"
    assert extra["flips"] == config.data.flips  # the symmetries test-time augmentation may use
    # config.yaml reproduces the run's config
    assert load_run_config(tmp_path / "config.yaml") == dataclasses.replace(
        config, train=dataclasses.replace(config.train, steps_per_epoch=3)
    )
    # no pickles anywhere in the run folder
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".ckpt")]


def test_resume_is_exact(tmp_path: Path) -> None:
    config = tiny_config(epochs=4)
    straight, _ = run(config, tmp_path / "a")
    first, _ = run(config, tmp_path / "b", stop_after=2)
    assert first.stopped == "paused" and first.epochs == 2
    second, _ = run(load_run_config(tmp_path / "b" / "config.yaml"), tmp_path / "b", resume=True)
    assert second.stopped == "finished" and second.steps == straight.steps == 12
    a, _ = read_tensors(tmp_path / "a" / "last" / "model.safetensors")
    b, _ = read_tensors(tmp_path / "b" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    opt_a, _ = read_tensors(tmp_path / "a" / "last" / "state.safetensors")
    opt_b, _ = read_tensors(tmp_path / "b" / "last" / "state.safetensors")
    for key in opt_a:
        if key.startswith("optim/"):
            assert torch.equal(opt_a[key], opt_b[key]), key


def test_resume_falls_back_to_an_earlier_checkpoint(tmp_path: Path) -> None:
    run(tiny_config(epochs=3, keep_checkpoints=2), tmp_path)
    state = tmp_path / "last" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])  # truncated, as by a crash mid-copy
    ckpt = load_latest(tmp_path)
    assert ckpt.folder.name == "epoch-0003" and ckpt.state.epoch == 3


def test_non_finite_loss_stops_without_saving(tmp_path: Path, monkeypatch) -> None:
    from unetkit.tasks.segment import SegmentObjective

    real = SegmentObjective.loss
    calls = {"n": 0}

    def poisoned(self, outputs, batch):
        calls["n"] += 1
        loss = real(self, outputs, batch)
        return loss * float("nan") if calls["n"] > 4 else loss

    monkeypatch.setattr(SegmentObjective, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch 2, step 5"):
        run(tiny_config(epochs=3), tmp_path)
    # the model written after epoch 1 is intact and finite
    model, _ = load_with_metadata(tmp_path)
    assert all(bool(torch.isfinite(p).all()) for p in model.state_dict().values())
    assert load_latest(tmp_path).state.step == 3


def test_weighted_ce_and_deep_supervision_train(tmp_path: Path) -> None:
    config = tiny_config(epochs=1, loss="weighted_ce")
    config = dataclasses.replace(config, model=UNetConfig(widths=(4, 8, 16), deep_supervision=True))
    result, _ = run(config, tmp_path)
    assert result.steps == 3 and np.isfinite(result.best_dice)


def test_time_budget_plan_is_recorded_for_reproduction(tmp_path: Path) -> None:
    config = tiny_config(max_minutes=0.1, auto_epochs=True, steps_per_epoch=None)
    result, _ = run(config, tmp_path)
    saved = load_run_config(tmp_path / "config.yaml").train
    assert not saved.auto_epochs and saved.total_steps is not None
    assert result.steps <= saved.total_steps
    assert result.stopped in ("finished", "time")
    # resuming a finished budget run trains no further
    if result.stopped == "finished":
        again, _ = run(load_run_config(tmp_path / "config.yaml"), tmp_path, resume=True)
        assert again.steps == result.steps


def test_non_finite_weights_are_never_saved_as_best(tmp_path: Path, monkeypatch) -> None:
    """A finite loss but a weight that overflowed on the epoch's last step: nothing is written."""
    from unetkit.train import step as step_module

    real = step_module.StepRunner.train_step

    def overflowing(self, epoch, index, step):
        out = real(self, epoch, index, step)
        if step == 5:  # the last step of epoch 2
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("inf"))
        return out

    monkeypatch.setattr(step_module.StepRunner, "train_step", overflowing)
    with pytest.raises(NonFiniteLossError, match=r"\(epoch 2, step 6\): parameter .* not finite"):
        run(tiny_config(epochs=3), tmp_path)
    model, _ = load_with_metadata(tmp_path)
    assert all(bool(torch.isfinite(p).all()) for p in model.state_dict().values())
    assert load_latest(tmp_path).state.step == 3


def test_resume_before_the_first_checkpoint_starts_from_step_0(tmp_path: Path) -> None:
    """Killed after config.yaml but before last/: --resume trains the whole run, and says so."""
    from unetkit.train.trainer import write_config

    config = tiny_config(epochs=2)
    straight, _ = run(config, tmp_path / "a")
    (tmp_path / "b").mkdir()
    write_config(tmp_path / "b", load_run_config(tmp_path / "a" / "config.yaml"))
    (tmp_path / "b" / ".last.x.tmp").mkdir()  # the unfinished first checkpoint
    said: list[str] = []
    prepared = prepare_data(config.data, seed=config.train.seed)
    config_b = load_run_config(tmp_path / "b" / "config.yaml")
    result, _ = train(config_b, prepared, tmp_path / "b", DistInfo(), resume=True, echo=said.append)
    assert any("no checkpoint yet" in line and "step 0" in line for line in said), said
    assert any(line.startswith("removed 1 unfinished") for line in said), said
    assert result.steps == straight.steps and not (tmp_path / "b" / ".last.x.tmp").exists()
    a, _ = read_tensors(tmp_path / "a" / "last" / "model.safetensors")
    b, _ = read_tensors(tmp_path / "b" / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("bf16_seconds", "chosen"), [(0.5, "bf16"), (1.8, "fp32")])
def test_precision_auto_trains_in_what_the_measurement_chose(
    tmp_path: Path, monkeypatch, bf16_seconds: float, chosen: str
) -> None:
    """train.precision=auto: the step, validation and config.yaml follow the (injected) timing."""
    from unetkit import hardware
    from unetkit import precision as policy

    monkeypatch.delenv(hardware.NO_BF16_ENV, raising=False)

    monkeypatch.setattr(policy, "native_bf16", lambda device="cpu": True)
    monkeypatch.setattr(policy, "_MEASURED", {})
    timed: list[str] = []

    def injected(measure, rounds=3):
        timed.append("yes")
        return policy.Bf16Timing(fp32_seconds=1.0, bf16_seconds=bf16_seconds, ratio=bf16_seconds)

    monkeypatch.setattr(policy, "time_both", injected)
    used: list[str] = []
    real_autocast = policy.autocast
    monkeypatch.setattr(
        policy, "autocast", lambda p, device="cpu": used.append(p) or real_autocast(p, device)
    )
    said: list[str] = []
    config = tiny_config(epochs=1, precision="auto")
    prepared = prepare_data(config.data, seed=config.train.seed)
    result, used_config = train(config, prepared, tmp_path, DistInfo(), echo=said.append)
    assert timed == ["yes"] and result.steps == 3
    assert set(used) == {chosen}  # every training step and validation ran in the chosen one
    assert used_config.train.precision == chosen
    assert load_run_config(tmp_path / "config.yaml").train.precision == chosen
    assert any(line.startswith(f"precision: {chosen} (auto: bf16 measured") for line in said)


def test_budget_run_slowed_mid_run_still_ends_annealed(tmp_path: Path, monkeypatch) -> None:
    """After step 6 every step takes 6 s more (virtual time added to the clock, so the test
    itself stays fast): the schedule follows the clock, the learning rate never rises after
    warm-up, and the run ends at the schedule's final value long before the planned steps."""
    import time

    from unetkit.train import step as step_module

    real_step = step_module.StepRunner.train_step
    real_clock = time.monotonic
    slowdown = {"seconds": 0.0}
    lrs: list[float] = []

    def slowed(self, epoch, index, step):
        if epoch < 10_000:  # training steps, not the planner's measurements
            lrs.append(self.optimizer.param_groups[0]["lr"])
            if step >= 6:
                slowdown["seconds"] += 6.0
        return real_step(self, epoch, index, step)

    monkeypatch.setattr(time, "monotonic", lambda: real_clock() + slowdown["seconds"])
    monkeypatch.setattr(step_module.StepRunner, "train_step", slowed)
    config = tiny_config(
        max_minutes=2.0, auto_epochs=True, steps_per_epoch=None, deterministic=False, overlays=0
    )
    result, used = run(config, tmp_path)
    t = used.train
    assert result.steps < t.epochs * t.steps_per_epoch  # the clock ended the run, not the plan
    assert result.steps <= 6 + 120 / 6
    assert lrs[0] < lrs[1] < lrs[2]  # warm-up from its start, 1 / (W + 1) of the peak
    top = int(np.argmax(lrs))
    assert lrs[top] <= t.lr * (1 + 1e-9)
    assert all(b <= a + 1e-12 for a, b in zip(lrs[top:], lrs[top + 1 :], strict=False))
    state = load_latest(tmp_path)
    assert state.state.schedule_share == 1.0 and state.state.finished
    # config.yaml records the steps the clock allowed, so the run can be reproduced
    assert load_run_config(tmp_path / "config.yaml").train.total_steps == result.steps
    assert state.optimizer["param_groups"][0]["lr"] == 0.0  # poly's final value
    assert lrs[-1] < 0.25 * t.lr  # the last step already ran close to the end of the decay


def test_ema_leaves_training_alone_and_saves_the_average(tmp_path: Path) -> None:
    """``train.ema_decay``: the trained weights are those of a run without it; the saved model
    is their moving average, as kept in the optimiser state that the checkpoint carries (so a
    resume continues it); without it the saved model is the trained weights."""
    run(tiny_config(epochs=1), tmp_path / "plain")
    run(tiny_config(epochs=1, ema_decay=0.5), tmp_path / "ema")
    plain, averaged = load_latest(tmp_path / "plain"), load_latest(tmp_path / "ema")
    for name, tensor in plain.model_tensors.items():
        torch.testing.assert_close(averaged.model_tensors[name], tensor, rtol=0, atol=0)
    params = [n for n, t in averaged.model_tensors.items() if t.is_floating_point()]
    saved_plain = read_tensors(tmp_path / "plain" / "model.safetensors")[0]
    saved = read_tensors(tmp_path / "ema" / "model.safetensors")[0]
    torch.testing.assert_close(saved_plain, plain.model_tensors, rtol=0, atol=0)
    states = averaged.optimizer["state"]
    assert len(states) > 0 and all("ema" in s for s in states.values())
    moved = [n for n in params if not torch.equal(saved[n], averaged.model_tensors[n])]
    assert moved  # the average is not the last weights
    from unetkit.model import UNet

    model = UNet(tiny_config().model)
    names = [n for n, _ in model.named_parameters()]
    for i, name in enumerate(names):
        torch.testing.assert_close(saved[name], states[i]["ema"], rtol=0, atol=0)
