"""The band accumulator's finalising: labels from weighted sums, argmax over classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.infer.band import Band, class_argmax
from unetkit.infer.tiling import plan_tiles
from unetkit.model import UNetConfig


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_class_argmax_is_argmax_with_first_class_on_ties(k: int) -> None:
    logits = torch.randn(k, 40, 30)
    logits[:, :5] = 0.5  # every class tied: the first wins, as torch.argmax says
    logits[-1, 5:10] = logits[0, 5:10]  # first and last tied
    got = class_argmax(logits)
    assert got.dtype == torch.int64
    torch.testing.assert_close(got, logits.argmax(dim=0), rtol=0, atol=0)


@pytest.mark.parametrize("overlap", ["auto", 0.5])
@pytest.mark.parametrize("k", [1, 3])
def test_band_labels_and_probabilities_match_a_full_accumulation(
    overlap: object, k: int
) -> None:
    config = UNetConfig(widths=(8, 16, 32), out_channels=k)  # context 24: tile 100 uses it
    plan = plan_tiles(config, (230, 197), 100, overlap)  # type: ignore[arg-type]
    assert (plan.axes[0].context > 0) == (overlap == "auto")
    rng = np.random.default_rng(0)
    labels = np.empty((230, 197), np.int64)
    probs = np.empty((2 if k == 1 else k, 230, 197), np.float32)
    band = Band(plan, k, labels, probs)
    full = np.zeros((k, 230 + 100, 197 + 100))
    starts = plan.axes[0].starts
    for r, (_, tiles) in enumerate(plan.rows()):
        for t in tiles:
            y = torch.from_numpy(rng.normal(size=(k, 100, 100)).astype(np.float32))
            y = y * torch.from_numpy(plan.weights(t))
            band.add(y, t)
            full[:, t[0] : t[0] + 100, t[1] : t[1] + 100] += y.numpy()
        band.finish_rows(starts[r + 1] if r + 1 < len(starts) else 230)
    weight = np.multiply.outer(plan.axes[0].weight_sum(), plan.axes[1].weight_sum())
    logits = full[:, :230, :197] / weight
    want = (logits[0] > 0) if k == 1 else logits.argmax(axis=0)
    np.testing.assert_array_equal(labels, want)
    p = 1 / (1 + np.exp(-logits[0])) if k == 1 else np.exp(logits) / np.exp(logits).sum(0)
    np.testing.assert_allclose(probs[-1] if k == 1 else probs, p, atol=1e-5)
