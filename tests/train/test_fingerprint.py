"""The data's fingerprint: spacing, per-axis pooling, patch and normalisation choices with their
reasons; resampling to a target spacing and back is exact in geometry."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.sample import Sample
from unetkit.errors import DataError
from unetkit.model import UNet, UNetConfig
from unetkit.train.fingerprint import (
    dataset_fingerprint,
    declared_geometry,
    fingerprint,
    plan_geometry,
    plan_pooling,
    target_spacing,
)
from unetkit.train.recipe import apply_recipe, geometry_plan, summarize_data
from unetkit.train.resample import resample, resample_back, resampled_shape


def _fp(spacing, shape=(10, 256, 256), modality=None, n=1):
    rng = np.random.default_rng(0)
    images = [rng.normal(100, 10, size=(1, *shape)).astype(np.float32) for _ in range(n)]
    masks = [(im[0] > 100).astype(np.int64) for im in images]
    return fingerprint(images, masks, spacings=[spacing] * n, modality=modality)


def test_serial_sections_are_not_pooled_along_z_until_the_plane_catches_up() -> None:
    strides, kernels = plan_pooling((50.0, 4.6, 4.6), (64, 256, 256), depth=6)
    # in-plane spacing 4.6 -> 9.2 -> 18.4 -> 36.8: z (50) is pooled once within 2x of it
    assert strides == ((1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))
    assert kernels == ((1, 3, 3), (1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    # a model built from the plan pools z by 4 and the plane by 32
    config = UNetConfig(spatial_dims=3, widths=(2,) * 6, strides=strides, kernel_sizes=kernels)
    assert config.downsample_factors == (4, 32, 32)


def test_an_axis_stops_being_pooled_when_the_patch_is_too_thin() -> None:
    strides, _ = plan_pooling((1.0, 1.0, 1.0), (8, 64, 64), depth=4)
    assert strides == ((2, 2, 2), (1, 2, 2), (1, 2, 2))  # 8 -> 4: not pooled again


def test_cubic_voxels_keep_the_isotropic_default() -> None:
    plan = plan_geometry(_fp((1.0, 1.0, 1.0), (64, 64, 64)), voxels=32**3, depth=3)
    assert plan.strides is None and plan.kernel_sizes is None
    assert plan.patch_size == (32, 32, 32)
    assert "voxels close to cubes" in " ".join(plan.reasons)


def test_patch_covers_an_even_physical_extent_within_the_image() -> None:
    plan = plan_geometry(_fp((50.0, 4.6, 4.6), (10, 1024, 1024)), voxels=48**3, depth=4)
    assert plan.patch_size[0] == 10  # all sections: z is capped by the image
    assert plan.patch_size[1] == plan.patch_size[2] and plan.patch_size[1] % 8 == 0
    assert abs(np.prod(plan.patch_size) - 48**3) < 0.2 * 48**3
    assert plan.strides == ((1, 2, 2),) * 3
    assert any("strides [[1, 2, 2]" in r for r in plan.reasons)


def test_ct_is_clipped_to_foreground_percentiles_with_one_global_zscore() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(-800, 50, size=(1, 8, 32, 32)).astype(np.float32)  # air
    mask = np.zeros((8, 32, 32), np.int64)
    mask[2:6, 8:24, 8:24] = 1
    image[0][mask > 0] = np.linspace(0, 100, int(mask.sum()))  # organ: 0..100 HU
    fp = fingerprint([image], [mask], spacings=[(2.0, 1.0, 1.0)], modality="CT")
    lo, hi, mean, _ = fp.foreground_percentiles
    assert lo == pytest.approx(0.5, abs=0.01) and hi == pytest.approx(99.5, abs=0.01)
    assert mean == pytest.approx(50.0, abs=0.1)  # the foreground, not the air
    plan = plan_geometry(fp, voxels=16**3, depth=2)
    assert (plan.normalization, plan.clip_percentiles) == ("dataset", (0.5, 99.5))
    mr = plan_geometry(_fp((1.0, 1.0, 1.0), (16, 16, 16), "MR"), voxels=8**3, depth=2)
    assert (mr.normalization, mr.clip_percentiles) == ("per_image", None)


def test_strongly_anisotropic_target_takes_the_10th_percentile_of_the_coarse_axis() -> None:
    rng = np.random.default_rng(2)
    images = [rng.normal(size=(1, 6, 16, 16)).astype(np.float32) for _ in range(10)]
    masks = [np.ones((6, 16, 16), np.int64)] * 10
    spacings = [(z, 0.7, 0.7) for z in (1.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0)]
    spacing, why = target_spacing(fingerprint(images, masks, spacings=spacings))
    assert spacing is not None and spacing[1:] == (0.7, 0.7)
    assert spacing[0] == pytest.approx(np.percentile([s[0] for s in spacings], 10))
    assert "10th percentile" in why


def test_declared_geometry_is_read_from_a_mapping_and_checked() -> None:
    assert declared_geometry({"modality": "CT", "spacing": [3, 0.8, 0.8]}) == (
        "ct",
        (3.0, 0.8, 0.8),
    )
    assert declared_geometry(None) == (None, None)
    with pytest.raises(ValueError, match="spacing: expected one positive number per spatial"):
        declared_geometry({"spacing": [1, 0, 1]})
    with pytest.raises(ValueError, match="modality"):
        declared_geometry({"modality": 3})


def _sample(stem: str, shape=(4, 16, 16)) -> Sample:
    image = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    return Sample(image, (image[0] > 0).astype(np.int64), None, stem)


def test_dataset_fingerprint_reads_dataset_yaml_and_nifti_headers(tmp_path) -> None:
    nib = pytest.importorskip("nibabel")
    assert dataset_fingerprint(tmp_path, [_sample("a")]) is None  # nothing to say: plain recipe
    (tmp_path / "images").mkdir()
    affine = np.diag([0.5, 0.5, 4.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), affine), tmp_path / "images/a.nii")
    fp = dataset_fingerprint(tmp_path, [_sample("a")])
    assert fp is not None and fp.spacings == ((4.0, 0.5, 0.5),)  # network order (S, A, R)
    (tmp_path / "dataset.yaml").write_text("modality: CT\nspacing: [3, 1, 1]\n")
    fp = dataset_fingerprint(tmp_path, [_sample("a")])
    assert fp is not None and fp.modality == "ct" and fp.spacings == ((3.0, 1.0, 1.0),)
    (tmp_path / "dataset.yaml").write_text("spacing: [3, 1]\n")
    with pytest.raises(DataError, match=r"dataset.yaml: spacing \[3.0, 1.0\] has 2 numbers"):
        dataset_fingerprint(tmp_path, [_sample("a")])


def test_the_recipe_takes_the_geometry_plan_unless_given_explicitly() -> None:
    from unetkit.config import RunConfig

    samples = [_sample("a", (10, 128, 128)), _sample("b", (10, 128, 128))]
    summary = summarize_data(samples, 2)
    fp = fingerprint(
        [s.image for s in samples], [s.mask for s in samples], spacings=[(50.0, 4.6, 4.6)] * 2
    )
    plan = geometry_plan(summary, fp, 4.0)
    assert plan is not None and plan.strides is not None
    config, chosen = apply_recipe(RunConfig(), summary, geometry=plan)
    assert config.model.strides == plan.strides and config.model.kernel_sizes == plan.kernel_sizes
    assert config.data.patch_size == plan.patch_size and "model.strides" in chosen
    # an anisotropic 3D plan: 2 patches of about half a 2D step's pixels each (8 x 128^2)
    assert config.train.batch_size == plan.batch_size == 2
    assert 2 * int(np.prod(plan.patch_size)) <= 8 * 128**2 < 3 * int(np.prod(plan.patch_size))
    UNet(config.model)  # the chosen model builds
    mine, _ = apply_recipe(RunConfig(), summary, {"model.strides"}, geometry=plan)
    assert mine.model.strides is None
    plain, _ = apply_recipe(RunConfig(), summary, geometry=geometry_plan(summary, None, 4.0))
    assert plain.model.strides is None


@pytest.mark.parametrize(
    ("spacing", "target"), [((5.0, 0.8, 0.8), (1.5, 1.0, 1.0)), ((1.0, 1.0, 1.0), (2.0, 0.7, 3.0))]
)
def test_resampling_and_back_is_exact_in_geometry(spacing, target) -> None:
    rng = np.random.default_rng(3)
    shape = (7, 19, 12)
    volume = rng.normal(size=(2, *shape)).astype(np.float32)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = (10.0, -4.0, 2.5)
    out, new_affine = resample(volume, spacing, target, affine)
    assert out.shape[1:] == resampled_shape(shape, spacing, target)
    # the same world box: the outer corners of the voxel grid map to the same points
    for corner in np.ndindex(2, 2, 2):
        old = affine @ np.array([*(c * n - 0.5 for c, n in zip(corner, shape, strict=True)), 1])
        far = zip(corner, out.shape[1:], strict=True)
        new = new_affine @ np.array([*(c * n - 0.5 for c, n in far), 1.0])
        np.testing.assert_allclose(new, old, atol=1e-9)
    back, back_affine = resample_back(out, shape, new_affine)
    assert back.shape == volume.shape
    np.testing.assert_allclose(back_affine, affine, atol=1e-12)
    labels = (volume[:1] > 0).astype(np.int64)
    up, up_affine = resample(labels, spacing, [s / 2 for s in spacing], affine, order=0)
    down, _ = resample_back(up, shape, up_affine, order=0)
    np.testing.assert_array_equal(down, labels)  # nearest, exact halving: labels come back
