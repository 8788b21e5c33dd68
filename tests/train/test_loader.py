"""Sharded batches: rank shards make up the single-process batch; the seeded split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.data.augment import AugmentConfig
from unetkit.data.synthetic import make_synthetic
from unetkit.train.loader import ShardedBatches, split_indices


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(10, 0.2, seed=3)
    assert sorted(train + val) == list(range(10)) and len(val) == 2
    assert split_indices(10, 0.2, seed=3) == (train, val)
    assert split_indices(10, 0.2, seed=4) != (train, val)
    assert len(split_indices(2, 0.01, 0)[1]) == 1 and len(split_indices(2, 0.99, 0)[0]) == 1
    with pytest.raises(ValueError, match="at least 2 images"):
        split_indices(1, 0.2, 0)


def test_two_rank_shards_equal_one_global_batch() -> None:
    samples = make_synthetic(5, size=24, seed=1)
    kw = dict(augment=AugmentConfig(), seed=7, foreground_share=0.5)
    whole = ShardedBatches(samples, 4, (16, 16), **kw).batch(epoch=2, index=1)
    parts = [
        ShardedBatches(samples, 2, (16, 16), rank=r, world_size=2, **kw).batch(2, 1)
        for r in range(2)
    ]
    assert torch.equal(torch.cat([p.images for p in parts]), whole.images)
    assert torch.equal(torch.cat([p.masks for p in parts]), whole.masks)
    # a different batch index or epoch gives different patches
    other = ShardedBatches(samples, 4, (16, 16), **kw).batch(epoch=2, index=2)
    assert not torch.equal(other.images, whole.images)


def test_last_axis_flips_never_turn_images_upside_down() -> None:
    # a vertical ramp: any flip of axis 0 or a rotation would change its first row
    image = np.tile(np.arange(16, dtype=np.float32)[:, None], (1, 16))[None]
    from unetkit.data.sample import Sample

    sample = Sample(image, np.zeros((16, 16), dtype=np.int64))
    aug = AugmentConfig.none()
    aug = AugmentConfig(**{**aug.__dict__, "p_flip": 1.0, "p_rot90": 1.0})
    batches = ShardedBatches([sample], 4, (16, 16), augment=aug, seed=0, flips="last_axis")
    images = batches.batch(0, 0).images
    assert torch.equal(images[:, 0, :, 0], torch.arange(16.0).expand(4, 16))


def test_weight_maps_come_with_the_batch() -> None:
    from unetkit.train.loader import WeightMapConfig

    samples = make_synthetic(3, size=32, seed=0)
    b = ShardedBatches(
        samples, 2, (32, 32), augment=None, seed=0, weight_map=WeightMapConfig()
    ).batch(0, 0)
    assert b.weights is not None and b.weights.shape == b.masks.shape
    assert float(b.weights.min()) >= 1.0


def test_stems_name_the_samples_of_each_batch() -> None:
    import numpy as np

    from unetkit.data.sample import Sample
    from unetkit.train.loader import ShardedBatches

    samples = [
        Sample(np.full((1, 8, 8), float(i), np.float32), np.zeros((8, 8), np.int64), None, f"im{i}")
        for i in range(5)
    ]
    batches = ShardedBatches(samples, 3, (8, 8), augment=None, seed=4, foreground_share=0.0)
    for epoch, index in ((0, 0), (1, 2)):
        means = batches.batch(epoch, index).images.mean(dim=(1, 2, 3)).tolist()
        assert batches.stems(epoch, index) == [f"im{round(m)}" for m in means]
