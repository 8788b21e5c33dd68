"""Augmentations: labels move with the image, stay a subset, shapes never change."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetkit.data.augment import (
    AugmentConfig,
    augment,
    elastic_field,
    flip_rot90,
    spatial_transform,
)
from unetkit.data.sample import Sample

ALL = AugmentConfig(
    p_flip=0.5, p_rot90=1.0, p_affine=1.0, p_elastic=1.0, p_intensity=1.0, p_gamma=1.0, p_noise=1.0
)
GEOMETRY_ONLY = AugmentConfig(
    p_intensity=0.0, p_gamma=0.0, p_noise=0.0, p_affine=0.0, p_elastic=0.0, p_flip=0.5, p_rot90=1.0
)


def _labelled(shape: tuple[int, ...], seed: int = 0, labels: int = 4) -> Sample:
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, labels, size=shape).astype(np.int64)
    return Sample(image=mask[None].astype(np.float32), mask=mask, instances=mask * 10, stem="x")


@pytest.mark.parametrize("shape", [(20,), (12, 12), (6, 8, 8), (5, 9)])
def test_flip_rot90_moves_image_and_labels_together(shape) -> None:
    sample = _labelled(shape)
    for seed in range(8):
        out = flip_rot90(sample, GEOMETRY_ONLY, np.random.default_rng(seed))
        assert out.image.shape == sample.image.shape
        assert np.array_equal(out.image[0], out.mask)
        assert np.array_equal(out.instances, out.mask * 10)


def test_flip_and_rot90_actually_happen() -> None:
    sample = _labelled((10, 10))
    outs = [flip_rot90(sample, GEOMETRY_ONLY, np.random.default_rng(s)).mask for s in range(10)]
    assert sum(not np.array_equal(o, sample.mask) for o in outs) >= 9


def test_zero_strength_elastic_is_identity() -> None:
    sample = _labelled((3, 16, 16))
    sample = Sample(
        np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32),
        sample.mask,
        sample.instances,
    )
    cfg = AugmentConfig(
        p_flip=0,
        p_rot90=0,
        p_affine=0,
        p_elastic=1.0,
        elastic_sigma=0.0,
        p_intensity=0,
        p_gamma=0,
        p_noise=0,
    )
    out = spatial_transform(sample, cfg, np.random.default_rng(3))
    assert np.allclose(out.image, sample.image, atol=1e-6)
    assert np.array_equal(out.mask, sample.mask)
    assert np.array_equal(out.instances, sample.instances)


def test_elastic_field_is_smooth_with_requested_strength() -> None:
    fields = [elastic_field((128, 128), 10.0, 3, np.random.default_rng(s)) for s in range(20)]
    corners = np.array([f[:, 0, 0] for f in fields]).ravel()
    assert 6 < corners.std() < 14  # control points at the corners have sigma = 10 px
    f = fields[0]
    assert np.abs(np.diff(f, axis=1)).max() < 2.0  # neighbouring pixels move alike


@settings(max_examples=25, deadline=None)
@given(
    dims=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    side=st.integers(4, 14),
)
def test_labels_stay_a_subset_after_every_augmentation(dims: int, seed: int, side: int) -> None:
    sample = _labelled((side,) * dims, seed=seed % 1000, labels=3)
    sample = Sample(sample.image, sample.mask + 1, (sample.mask + 1) * 7)  # no 0 in the input
    out = augment(sample, ALL, np.random.default_rng(seed))
    assert out.image.shape == sample.image.shape and out.image.dtype == np.float32
    assert set(np.unique(out.mask)) <= set(np.unique(sample.mask))
    assert set(np.unique(out.instances)) <= set(np.unique(sample.instances))
    assert np.isfinite(out.image).all()


def test_spatial_transform_keeps_image_and_mask_aligned() -> None:
    mask = np.zeros((40, 40), np.int64)
    mask[10:25, 12:30] = 1
    sample = Sample(mask[None].astype(np.float32) * 100, mask)
    cfg = AugmentConfig(p_affine=1.0, p_elastic=1.0, rotate_deg=30)
    for seed in range(5):
        out = spatial_transform(sample, cfg, np.random.default_rng(seed))
        agree = np.mean((out.image[0] > 50) == (out.mask == 1))
        assert agree > 0.97


def test_deterministic_given_generator_state() -> None:
    sample = _labelled((16, 16))
    a = augment(sample, ALL, np.random.default_rng(11))
    b = augment(sample, ALL, np.random.default_rng(11))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def test_intensity_changes_image_only() -> None:
    sample = _labelled((16, 16))
    cfg = AugmentConfig(
        p_flip=0, p_rot90=0, p_affine=0, p_elastic=0, p_intensity=1.0, p_gamma=1.0, p_noise=1.0
    )
    out = augment(sample, cfg, np.random.default_rng(0))
    assert not np.array_equal(out.image, sample.image)
    assert np.array_equal(out.mask, sample.mask)


def test_none_config_is_identity() -> None:
    sample = _labelled((5, 6, 7))
    out = augment(sample, AugmentConfig.none(), np.random.default_rng(0))
    assert np.array_equal(out.image, sample.image) and np.array_equal(out.mask, sample.mask)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="p_flip"):
        AugmentConfig(p_flip=1.5)
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="elastic_grid"):
        AugmentConfig(elastic_grid=1)


def test_polarity_inversion_mirrors_each_channel_about_its_mean_and_keeps_labels() -> None:
    from unetkit.data.augment import intensity

    rng = np.random.default_rng(1)
    image = np.stack([rng.random((9, 11)), 5.0 + 2.0 * rng.random((9, 11))]).astype(np.float32)
    mask = (image[0] > 0.5).astype(np.int64)
    sample = Sample(image=image, mask=mask, instances=mask * 3, stem="p")
    only_invert = AugmentConfig.none().__class__(
        **{**AugmentConfig.none().__dict__, "p_invert": 1.0}
    )
    out = intensity(sample, only_invert, np.random.default_rng(0))
    mean = image.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out.image, 2 * mean - image, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out.image.mean(axis=(1, 2)), mean[:, 0, 0], rtol=1e-6)
    assert np.array_equal(out.mask, mask) and np.array_equal(out.instances, mask * 3)
    # bright objects become dark ones
    assert out.image[0][mask == 1].mean() < out.image[0][mask == 0].mean()


def test_no_inversion_draws_no_random_number() -> None:
    # runs made before the inversion existed must stay bit-identical
    from unetkit.data.augment import intensity

    sample = _labelled((10, 10))
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    intensity(sample, ALL, a)
    plain = AugmentConfig(**{**ALL.__dict__, "p_invert": 0.0})
    intensity(sample, plain, b)
    assert a.bit_generator.state == b.bit_generator.state
    c = np.random.default_rng(5)
    intensity(sample, AugmentConfig(**{**ALL.__dict__, "p_invert": 0.5}), c)
    assert c.bit_generator.state != a.bit_generator.state


def test_invert_probability_is_checked() -> None:
    with pytest.raises(ValueError, match="p_invert"):
        AugmentConfig(p_invert=1.5)
