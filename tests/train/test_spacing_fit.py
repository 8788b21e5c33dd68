"""Training at the target spacing: volumes whose spacing differs from the recipe's target are
resampled (images linear, masks per class), the model stores its target spacing, ``info`` shows
it, and ``predict`` brings labels back on the input's own grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.config import DataConfig
from unetkit.train.prepare import needs_new_spacing, prepare_data

nib = pytest.importorskip("nibabel")


def _case(folder: Path, stem: str, z: int, pixdim_z: float, seed: int) -> None:
    """A (24, 20, z) volume at 1 x 1 x ``pixdim_z`` mm with a ball of class 1 in it."""
    rng = np.random.default_rng(seed)
    depth_mm = z * pixdim_z
    grid = np.meshgrid(
        np.arange(24) - 11.5, np.arange(20) - 9.5, (np.arange(z) + 0.5) * pixdim_z - depth_mm / 2,
        indexing="ij",
    )
    mask = ((grid[0] / 7) ** 2 + (grid[1] / 6) ** 2 + (grid[2] / 7) ** 2 <= 1).astype(np.uint8)
    image = (mask * 2.0 + rng.normal(0, 0.3, mask.shape)).astype(np.float32)
    affine = np.diag([1.0, 1.0, pixdim_z, 1.0])
    for sub, data in (("images", image), ("masks", mask)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), str(folder / sub / f"{stem}.nii.gz"))


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Three cases at 1 x 1 x 2 mm and one at 1 x 1 x 4 mm: whichever three are trained on, the
    median spacing, the target, is 2 x 1 x 1 (network order)."""
    data = tmp_path / "data"
    _case(data, "a", 8, 2.0, 0)
    _case(data, "b", 8, 2.0, 1)
    _case(data, "c", 4, 4.0, 2)
    _case(data, "d", 8, 2.0, 3)
    return data


def test_prepare_resamples_only_the_volumes_off_the_target(mixed: Path) -> None:
    plain = prepare_data(DataConfig(path=str(mixed), val_fraction=0.25))
    assert plain.resampled == 0 and plain.target_spacing is None
    shapes = {s.stem: s.spatial_shape for s in [*plain.raw_train, *plain.raw_val]}
    assert shapes["c.nii"] == (4, 20, 24)  # network order (S, A, R)
    assert needs_new_spacing(plain, (2.0, 1.0, 1.0))
    assert not needs_new_spacing(plain, None)
    moved = prepare_data(
        DataConfig(path=str(mixed), val_fraction=0.25, target_spacing=(2.0, 1.0, 1.0))
    )
    assert moved.resampled == 1 and moved.target_spacing == (2.0, 1.0, 1.0)
    samples = {s.stem: s for s in [*moved.raw_train, *moved.raw_val]}
    assert samples["c.nii"].spatial_shape == (8, 20, 24)
    assert set(np.unique(samples["c.nii"].mask)) == {0, 1}
    for stem in ("a.nii", "b.nii"):  # at the target already: untouched, bit for bit
        before = next(s for s in [*plain.raw_train, *plain.raw_val] if s.stem == stem)
        np.testing.assert_array_equal(samples[stem].image, before.image)


def test_train_at_the_target_spacing_then_info_and_predict(cli, mixed: Path, tmp_path) -> None:
    run = tmp_path / "run"
    r = cli(
        "train",
        "--data",
        str(mixed),
        "--out",
        str(run),
        "--epochs",
        "1",
        "model.widths=[4,8]",
        "data.patch_size=[8,16,16]",
        "data.val_fraction=0.25",
        "train.steps_per_epoch=2",
        "train.batch_size=2",
        "train.threads=1",
        "train.int8_calibration=false",
    )
    assert r.returncode == 0, r.stderr
    assert "spacing: resampled 1 of 4 images to the target spacing 2x1x1" in r.stdout
    from unetkit.config import load_run_config
    from unetkit.modelfile import load_with_metadata

    assert load_run_config(run / "config.yaml").data.target_spacing == (2.0, 1.0, 1.0)
    _, meta = load_with_metadata(run / "model.safetensors")
    assert meta["target_spacing"] == [2.0, 1.0, 1.0]
    info = cli("info", "--model", str(run))
    assert info.returncode == 0, info.stderr
    assert "target spacing: 2 x 1 x 1" in info.stdout
    out = tmp_path / "pred"
    p = cli("predict", "--model", str(run), "--input", str(mixed / "images"), "--out", str(out))
    assert p.returncode == 0, p.stderr
    for stem in ("a", "c"):
        ref = nib.load(str(mixed / "images" / f"{stem}.nii.gz"))
        got = nib.load(str(out / f"{stem}.nii.gz"))
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got.affine, ref.affine)
    # evaluate predicts each volume at the target and scores it on its own mask's grid
    e = cli("evaluate", "--model", str(run), "--data", str(mixed), "--json", str(tmp_path / "e"))
    assert e.returncode == 0, e.stderr
    import json

    scored = json.loads((tmp_path / "e").read_text())
    assert len(scored["per_image"]) == 4


def test_a_given_target_spacing_is_the_one_the_fingerprint_plans_with(mixed: Path) -> None:
    from unetkit.config import RunConfig
    from unetkit.run_steps import choose_recipe
    from unetkit.train.distributed import DistInfo

    data = DataConfig(path=str(mixed), val_fraction=0.25, target_spacing=(4.0, 1.0, 1.0))
    prepared = prepare_data(data)
    assert prepared.resampled == 3  # a, b and d halve along z
    config, lines = choose_recipe(
        RunConfig(data=data), prepared, {"data.target_spacing"}, DistInfo(), lambda _m: None
    )
    assert config.data.target_spacing == (4.0, 1.0, 1.0)
    assert any(line.startswith("fingerprint: target spacing 4x1x1 (") for line in lines)
