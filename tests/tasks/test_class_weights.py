"""Cross-entropy class weights from class frequencies (``train.class_weighting``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import RunConfig, TrainConfig
from unetkit.tasks.segment import build_loss

FREQS = np.array([0.64, 0.32, 0.04, 0.0])  # class 3 never occurs in the training set


def _weights(weighting: str, loss: str = "dice_ce") -> np.ndarray | None:
    config = RunConfig(train=TrainConfig(loss=loss, class_weighting=weighting))  # type: ignore[arg-type]
    module = build_loss(config, FREQS)
    ce = getattr(module, "ce", module)
    weights = ce.class_weights
    return None if weights is None else weights.numpy()


def test_no_weighting_leaves_the_cross_entropy_unweighted() -> None:
    assert _weights("none") is None


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        # 1/f = 1/0.64, 1/0.32, 1/0.04 = 1 : 2 : 16, scaled to a mean of 1 over present classes
        ("balanced", np.array([1.0, 2.0, 16.0]) * 3 / 19),
        # 1/sqrt(f) = 1/0.8, 1/0.566, 1/0.2 = 1 : sqrt(2) : 4
        ("sqrt", np.array([1.0, np.sqrt(2.0), 4.0]) * 3 / (5 + np.sqrt(2.0))),
    ],
)
def test_weights_follow_the_inverse_frequency_or_its_root(
    weighting: str, expected: np.ndarray
) -> None:
    w = _weights(weighting)
    assert w is not None
    np.testing.assert_allclose(w[:3], expected, rtol=1e-6)
    assert w[3] == 0.0  # an absent class gets no weight (and no division by zero)
    assert w[:3].mean() == pytest.approx(1.0)


def test_sqrt_weights_are_gentler_than_balanced() -> None:
    balanced, root = _weights("balanced"), _weights("sqrt")
    assert balanced is not None and root is not None
    rare_to_common = root[2] / root[0], balanced[2] / balanced[0]
    assert 1.0 < rare_to_common[0] < rare_to_common[1]
    assert rare_to_common[0] == pytest.approx(np.sqrt(rare_to_common[1]))


def test_weighted_cross_entropy_counts_a_rare_class_error_more() -> None:
    """The same logit error costs more on the rare class once weighted."""
    config = RunConfig(train=TrainConfig(loss="ce", class_weighting="sqrt"))
    loss = build_loss(config, FREQS)
    logits = torch.zeros(1, 4, 1, 1)
    common = loss(logits, torch.zeros(1, 1, 1, dtype=torch.long))
    rare = loss(logits, torch.full((1, 1, 1), 2, dtype=torch.long))
    assert float(rare) / float(common) == pytest.approx(4.0, rel=1e-5)
