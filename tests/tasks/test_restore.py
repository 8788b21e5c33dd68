"""task=restore: blind-spot masking, losses, batches, normalisation, data checks, training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from unetkit.config import DataConfig, RestoreConfig, RunConfig, TrainConfig
from unetkit.data.augment import AugmentConfig
from unetkit.data.restoration import load_restore_dataset
from unetkit.data.synthetic_restore import make_synthetic_restore
from unetkit.errors import DataError
from unetkit.model import UNetConfig
from unetkit.modelfile import load_with_metadata, read_tensors
from unetkit.tasks import make_objective
from unetkit.tasks.restore import blind_spot, regression_loss
from unetkit.tasks.restore_data import RestoreBatches, prepare_restore
from unetkit.train.checkpoint import load_latest
from unetkit.train.distributed import DistInfo
from unetkit.train.trainer import train


def test_blind_spot_replaces_a_few_pixels_by_a_neighbour() -> None:
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    masked, mask = blind_spot(x, 0.05, 2, g)
    assert mask.shape == (2, 1, 16, 16)
    changed = masked != x  # every value is distinct, so a replaced pixel always changes
    assert torch.equal(changed.any(1, keepdim=True), mask.bool())
    assert torch.equal(changed[:, :1], changed[:, 1:2])  # the same pixels in every channel
    assert 1 <= int(mask[0].sum()) <= round(0.05 * 256)
    for b, _c, i, j in torch.nonzero(changed):
        v = int(masked[b, 0, i, j].item()) - int(x[b, 0, 0, 0].item())
        ni, nj = divmod(v, 16)  # the position the value came from
        assert (ni, nj) != (int(i), int(j)) and abs(ni - i) <= 2 and abs(nj - j) <= 2
    again, _ = blind_spot(x, 0.05, 2, torch.Generator().manual_seed(0))
    assert torch.equal(again, masked)


def test_blind_spot_never_copies_a_pixel_onto_itself_at_borders() -> None:
    x = torch.arange(8 * 8, dtype=torch.float32).reshape(1, 1, 8, 8)
    for seed in range(20):
        masked, mask = blind_spot(x, 0.5, 2, torch.Generator().manual_seed(seed))
        assert torch.equal(masked != x, mask.bool())


def test_regression_losses() -> None:
    out = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    tgt = torch.zeros_like(out)
    assert float(regression_loss(out, tgt, "l1")) == pytest.approx(2.5)
    assert float(regression_loss(out, tgt, "l2")) == pytest.approx(7.5)
    mask = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert float(regression_loss(out, tgt, "l2", mask)) == pytest.approx((4 + 16) / 2)


def test_batches_cut_and_flip_image_and_target_together() -> None:
    samples = make_synthetic_restore(3, size=24)
    samples = [dataclasses.replace(s, target=2 * s.image + 1) for s in samples]
    batches = RestoreBatches(samples, 4, (16, 16), p_flip=0.5, p_rot90=0.5, seed=3)
    b = batches.batch(1, 2)
    assert b.images.shape == (4, 1, 16, 16) and torch.allclose(b.targets, 2 * b.images + 1)
    assert torch.equal(batches.batch(1, 2).images, b.images)  # a pure function of (e, k)
    small = RestoreBatches(samples, 2, (32, 32), p_flip=0, p_rot90=0, seed=0).batch(0, 0)
    assert small.images.shape == (2, 1, 32, 32)  # mirrored up to the patch
    two_ranks = [
        RestoreBatches(samples, 2, (16, 16), p_flip=0.5, p_rot90=0.5, seed=3, rank=r, world_size=2)
        for r in (0, 1)
    ]
    assert torch.equal(torch.cat([r.batch(1, 2).images for r in two_ranks]), b.images)


def _config(**restore: object) -> RunConfig:
    return RunConfig(
        model=UNetConfig(widths=(8, 16), norm="group", out_channels=1),
        data=DataConfig(
            synthetic_count=5,
            synthetic_size=32,
            patch_size=(32, 32),
            augment=AugmentConfig(p_flip=0.5, p_rot90=0.5),
        ),
        train=TrainConfig(
            epochs=3,
            steps_per_epoch=4,
            batch_size=2,
            lr=3e-3,
            deterministic=True,
            channels_last=False,
            int8_calibration=False,
        ),
        task="restore",
        restore=RestoreConfig(**restore),  # type: ignore[arg-type]
    )


def test_targets_are_normalised_with_their_inputs_numbers() -> None:
    prepared = prepare_restore(_config())
    assert prepared.mode == "supervised" and prepared.scored and prepared.num_classes == 1
    raw = make_synthetic_restore(5, size=32)
    by_stem = {s.stem: s for s in raw}
    for s, (mean, std) in zip(prepared.val, prepared.val_stats, strict=True):
        src = by_stem[s.stem]
        assert mean[0] == pytest.approx(src.image.mean(), rel=1e-5)
        assert np.allclose(s.target * std[0] + mean[0], src.target, atol=1e-3)


def test_self_supervised_mode_trains_on_images_and_still_scores_targets() -> None:
    prepared = prepare_restore(_config(mode="self_supervised"))
    assert prepared.mode == "self_supervised" and prepared.scored
    assert all(s.target is None for s in prepared.train)
    objective = make_objective(_config(mode="self_supervised"), prepared, DistInfo())
    torch.manual_seed(0)
    batch = objective.inputs(objective.batches.batch(0, 0))
    assert batch.weights is not None and torch.equal(
        batch.target, objective.batches.batch(0, 0).images
    )
    assert 0 < float(batch.weights.mean()) < 0.1


def _run(config: RunConfig, out: Path, **kwargs: object):
    return train(config, prepare_restore(config), out, DistInfo(), quiet=True, **kwargs)


def test_supervised_training_learns_and_records_the_task(tmp_path: Path) -> None:
    config = dataclasses.replace(
        _config(), train=dataclasses.replace(_config().train, epochs=6, schedule="constant")
    )
    result, _ = _run(config, tmp_path)
    rows = load_latest(tmp_path).state.history
    assert result.score_name == "psnr" and result.best_dice == max(r["val_psnr"] for r in rows)
    assert rows[-1]["train_loss"] < 0.7 * rows[0]["train_loss"]
    assert np.isnan(rows[-1]["val_dice"]) and 0 < rows[-1]["val_ssim"] <= 1
    _, meta = load_with_metadata(tmp_path)
    assert meta["task"] == "restore" and meta["restore"]["mode"] == "supervised"
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "val_psnr" in header and "dice_" not in header
    from unetkit.report.build import write_report

    page = write_report(tmp_path, prepared=prepare_restore(config)).read_text()
    assert "task=restore: validation overlays" in page  # no class-map scoring of a regression


def test_restore_resume_is_exact_including_blind_spot_masks(tmp_path: Path) -> None:
    config = _config(mode="self_supervised")
    _run(config, tmp_path / "straight")
    _run(config, tmp_path / "split", stop_after=1)
    _run(config, tmp_path / "split", resume=True)
    a, _ = read_tensors(tmp_path / "straight" / "last" / "model.safetensors")
    b, _ = read_tensors(tmp_path / "split" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _write(root: Path, stems: list[str], *, target_shape=(24, 24), target_dtype=np.float32):
    (root / "images").mkdir(parents=True)
    (root / "targets").mkdir()
    rng = np.random.default_rng(0)
    for stem in stems:
        tifffile.imwrite(
            root / "images" / f"{stem}.tif", rng.integers(0, 4000, (24, 24)).astype(np.uint16)
        )
        tifffile.imwrite(
            root / "targets" / f"{stem}.tif",
            rng.uniform(0, 4000, target_shape).astype(target_dtype),
        )


def test_a_folder_dataset_loads_with_or_without_targets(tmp_path: Path) -> None:
    _write(tmp_path / "d", ["a", "b"])
    samples, with_targets = load_restore_dataset(tmp_path / "d")
    assert with_targets and samples[0].target.shape == (1, 24, 24)
    (tmp_path / "d" / "targets" / "a.tif").rename(tmp_path / "a.tif")
    with pytest.raises(DataError, match="no target with stem 'a'"):
        load_restore_dataset(tmp_path / "d")
    only = tmp_path / "only"
    (only / "images").mkdir(parents=True)
    (tmp_path / "d" / "images" / "a.tif").rename(only / "images" / "a.tif")
    samples, with_targets = load_restore_dataset(only)
    assert not with_targets and samples[0].target is None


def test_bad_targets_are_refused_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "size", ["a"], target_shape=(20, 24))
    with pytest.raises(DataError, match=r"a.tif: target size 20x24 differs from image size 24x24"):
        load_restore_dataset(tmp_path / "size")
    labels = tmp_path / "labels"
    _write(labels, ["a"])
    tifffile.imwrite(
        labels / "targets" / "a.tif", (np.arange(24 * 24).reshape(24, 24) % 3).astype(np.uint8)
    )
    with pytest.raises(DataError, match="holds only 3 integer values: class labels"):
        load_restore_dataset(labels)
    seg = tmp_path / "seg"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    with pytest.raises(DataError, match=r"has masks/ .* but no targets/"):
        load_restore_dataset(seg)
    chans = tmp_path / "chans"
    _write(chans, ["a", "b"])
    tifffile.imwrite(
        chans / "targets" / "b.tif", np.zeros((2, 24, 24), np.float32), metadata={"axes": "CYX"}
    )
    with pytest.raises(DataError, match="targets have different channel counts"):
        load_restore_dataset(chans)


def test_supervised_mode_without_targets_is_one_clear_error(tmp_path: Path) -> None:
    only = tmp_path / "only"
    (only / "images").mkdir(parents=True)
    for i in range(2):
        tifffile.imwrite(only / "images" / f"{i}.tif", np.zeros((16, 16), np.uint16))
    config = dataclasses.replace(_config(mode="supervised"), data=DataConfig(path=str(only)))
    with pytest.raises(DataError, match=r"restore.mode=supervised: .* has no targets/"):
        prepare_restore(config)


@pytest.mark.parametrize("replace", ["median", "mean"])
def test_blind_spot_median_or_mean_of_the_neighbourhood_without_the_pixel(replace: str) -> None:
    x = torch.rand(2, 2, 12, 12, generator=torch.Generator().manual_seed(1))
    masked, mask = blind_spot(x, 0.1, 1, torch.Generator().manual_seed(3), replace)  # type: ignore[arg-type]
    assert torch.equal(masked[mask.expand_as(x) == 0], x[mask.expand_as(x) == 0])
    for b, _c, i, j in torch.nonzero(mask):
        rows = [abs(r) if r >= 0 else -r for r in range(i - 1, i + 2)]  # mirror at 0 ...
        rows = [22 - r if r > 11 else r for r in rows]  # ... and at 11
        cols = [22 - c if c > 11 else c for c in (abs(c) for c in range(j - 1, j + 2))]
        for ch in range(2):
            ring = [x[b, ch, r, c] for r in rows for c in cols if (r, c) != (i, j)]
            assert len(ring) == 8  # the pixel itself is never among its neighbours
            ring_t = torch.stack(ring)
            want = ring_t.median() if replace == "median" else ring_t.mean()
            assert float(masked[b, ch, i, j]) == pytest.approx(float(want), abs=1e-6)


def _planned(folder: Path, *overrides: str) -> RunConfig:
    """The config a ``unetkit train task=restore --data folder`` run trains with (the recipe
    applied; nothing trained)."""
    from unetkit.run_steps import choose_recipe, prepare_for_task
    from unetkit.workflow import resolve_config, with_run_defaults

    config, explicit = resolve_config(None, ["task=restore", f"data.path={folder}", *overrides])
    config = with_run_defaults(config, explicit)
    config, _ = choose_recipe(config, prepare_for_task(config), explicit, DistInfo(), print)
    return config


def test_a_restore_run_without_a_budget_plans_enough_steps_to_converge(tmp_path: Path) -> None:
    _write(tmp_path / "d", [f"s{i}" for i in range(6)])
    plain = _planned(tmp_path / "d")
    # the segmentation default (two passes over 5 images per epoch) would be 10 steps an epoch
    assert plain.train.epochs * plain.train.steps_per_epoch >= 1000
    assert plain.model.norm == "none" and len(plain.model.widths) == 3
    assert plain.restore.blind_spot_replace == "median"  # N2V2's replacement by default
    given = _planned(tmp_path / "d", "train.epochs=3", "train.steps_per_epoch=7")
    assert (given.train.epochs, given.train.steps_per_epoch) == (3, 7)  # the caller's, kept
    budget = _planned(tmp_path / "d", "train.max_minutes=5")
    assert budget.train.auto_epochs  # a budget plans its own epochs from the step time
    # the same model with no budget as with a short one; only a long budget widens it
    assert budget.model.widths == plain.model.widths
    assert _planned(tmp_path / "d", "train.max_minutes=60").model.widths[0] > plain.model.widths[0]
