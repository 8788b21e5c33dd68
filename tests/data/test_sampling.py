"""Normalisation, patches (small images, foreground share) and reproducible batches."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.augment import AugmentConfig
from unetkit.data.sample import Sample
from unetkit.data.sampling import PatchSampler, dataset_stats, normalize, sample_patch
from unetkit.data.synthetic import make_synthetic


def test_per_image_normalize_is_zscore_per_channel() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(5, 2, (20, 20)), np.full((20, 20), 3.0)]).astype(np.float32)
    out = normalize(image)
    assert out.dtype == np.float32
    assert abs(out[0].mean()) < 1e-5 and abs(out[0].std() - 1) < 1e-4
    assert np.all(out[1] == 0)  # constant channel -> 0, not NaN


def test_dataset_normalize_with_clipping() -> None:
    rng = np.random.default_rng(0)
    samples = [
        Sample(rng.normal(100, 10, (1, 30, 30)).astype(np.float32), np.zeros((30, 30), np.int64))
        for _ in range(3)
    ]
    stats = dataset_stats(samples, clip_percentiles=(0.5, 99.5))
    assert stats.mean[0] == pytest.approx(100, abs=1.5) and stats.std[0] == pytest.approx(10, abs=1)
    spike = samples[0].image.copy()
    spike[0, 0, 0] = 1e6
    out = normalize(spike, "dataset", stats)
    assert out[0, 0, 0] == pytest.approx((stats.upper[0] - stats.mean[0]) / stats.std[0])
    with pytest.raises(ValueError, match="stats"):
        normalize(spike, "dataset")


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_patch_of_image_smaller_than_patch(pad_mode: str) -> None:
    mask = np.zeros((5, 7), np.int64)
    mask[2, 3] = 1
    sample = Sample(mask[None].astype(np.float32), mask, mask * 4)
    patch = sample_patch(sample, (16, 9), np.random.default_rng(0), 1.0, pad_mode=pad_mode)
    assert patch.image.shape == (1, 16, 9) and patch.mask.shape == (16, 9)
    assert np.array_equal(patch.image[0], patch.mask)  # padded consistently
    assert patch.mask.sum() >= 1
    one = Sample(np.ones((1, 1), np.float32), np.ones((1,), np.int64))
    assert sample_patch(one, 8, np.random.default_rng(0)).image.shape == (1, 8)


@pytest.mark.parametrize("share", [0.0, 0.33, 0.8])
def test_foreground_share_respected(share: float) -> None:
    mask = np.zeros((120, 120), np.int64)
    mask[60, 30] = 1
    sample = Sample(np.zeros((1, 120, 120), np.float32), mask)
    rng = np.random.default_rng(1)
    hits = np.mean([sample_patch(sample, 12, rng, share).mask.any() for _ in range(400)])
    chance = (12 / 120) ** 2
    assert abs(hits - (share + (1 - share) * chance)) < 0.07


def test_patch_matches_source_region() -> None:
    sample = make_synthetic(1, size=40)[0]
    patch = sample_patch(sample, (16, 16), np.random.default_rng(2), 1.0)
    image = sample.image[0]
    # locate the patch in the source: it must be an exact crop with the matching mask crop
    found = [
        (i, j)
        for i in range(25)
        for j in range(25)
        if np.array_equal(image[i : i + 16, j : j + 16], patch.image[0])
    ]
    assert len(found) == 1
    i, j = found[0]
    assert np.array_equal(sample.mask[i : i + 16, j : j + 16], patch.mask)
    assert patch.mask.any()  # foreground_share=1 and the image has foreground


def test_sampler_batches_reproducible_without_replay() -> None:
    samples = make_synthetic(6, size=32)
    kwargs = dict(augment=AugmentConfig(), seed=3, batches_per_epoch=4)
    a = PatchSampler(samples, 2, (24, 24), **kwargs)
    b = PatchSampler(samples, 2, (24, 24), **kwargs)
    full = list(a.epoch(1))
    direct = b.batch(1, 2)  # no earlier batch produced on b
    assert np.array_equal(full[2].images, direct.images)
    assert np.array_equal(full[2].masks, direct.masks) and full[2].stems == direct.stems
    assert [x.stems for x in b.epoch(1, start=2)] == [x.stems for x in full[2:]]
    assert not np.array_equal(a.batch(2, 2).images, direct.images)
    other = PatchSampler(samples, 2, (24, 24), augment=AugmentConfig(), seed=4)
    assert not np.array_equal(other.batch(1, 0).images, a.batch(1, 0).images)


def test_sampler_shapes_and_epoch_covers_samples() -> None:
    samples = make_synthetic(5, spatial_dims=3, size=12)
    sampler = PatchSampler(samples, 2, 8, seed=0)
    assert len(sampler) == 3
    batches = list(sampler.epoch(0))
    assert batches[0].images.shape == (2, 1, 8, 8, 8) and batches[0].images.dtype == np.float32
    assert batches[0].masks.shape == (2, 8, 8, 8) and batches[0].masks.dtype == np.int64
    assert batches[0].instances is not None
    stems = [s for b in batches for s in b.stems]
    assert set(stems) == {s.stem for s in samples}


def test_sampler_bad_arguments() -> None:
    samples = make_synthetic(2, size=16)
    with pytest.raises(ValueError, match="patch_size"):
        PatchSampler(samples, 2, (8, 8, 8))
    with pytest.raises(ValueError, match="batch_size"):
        PatchSampler(samples, 0, 8)
    with pytest.raises(ValueError, match="index"):
        PatchSampler(samples, 2, 8).batch(0, 5)


def test_class_aware_sampling_centres_a_rare_class_as_often_as_a_common_one() -> None:
    """One pixel of class 2 beside 600 of class 1: drawn by class, it is the centre of about
    half the foreground patches; drawn by pixel, of about 1 in 600."""
    mask = np.zeros((64, 64), np.int64)
    mask[:20, :30] = 1
    mask[50, 50] = 2
    sample = Sample(np.zeros((1, 64, 64), np.float32), mask, None, "s")
    rng = np.random.default_rng(0)
    by_class = [
        sample_patch(sample, 9, rng, 1.0, classes=(1, 2)).mask[4, 4] == 2 for _ in range(400)
    ]
    by_pixel = [sample_patch(sample, 9, rng, 1.0).mask[4, 4] == 2 for _ in range(400)]
    assert 0.4 < np.mean(by_class) < 0.6
    assert np.mean(by_pixel) < 0.02
    # classes the image lacks are skipped; none present falls back to any foreground pixel
    only_3 = [sample_patch(sample, 9, rng, 1.0, classes=(3,)).mask[4, 4] > 0 for _ in range(50)]
    assert all(only_3)
    assert all(sample_patch(sample, 9, rng, 1.0, classes=(2, 3)).mask[4, 4] == 2 for _ in range(20))
