"""Test-time augmentation: the symmetry transforms a prediction is averaged over.

* 1D: identity and the flip (2 transforms).
* 2D: the 8 symmetries of the square (dihedral group D4): rotations by 0/90/180/270 degrees,
  each with and without a flip. A rotation swaps the two axes, which works for any tile shape.
* 3D: flips of every subset of the three axes (8 transforms); no rotations, because volumes are
  often anisotropic (the slice axis is coarser) and rotating would mix resolutions.
* A model trained with left-right flips only (``data.flips: last_axis``, the recipe's choice for
  images with an up, such as street photographs) is averaged over those only: the identity and
  the mirror of the last axis (2 transforms). Its other symmetries are not symmetries of its
  data: the full set cost a 10-minute CamVid model 0.11 mean IoU (0.430 -> 0.321).

Predictions are averaged in logit space (the outputs of :func:`unetkit.infer.engine.run_network`
after the inverse transform), as nnU-Net does. The averaged predictor is exactly equivariant:
transforming the input by any of these symmetries transforms the averaged output the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Transform:
    """A flip of some spatial axes followed by ``rot90`` quarter turns of the last two axes.

    Axes are spatial (0 = first spatial axis); tensors are ``(B, C, *spatial)``.
    """

    flips: tuple[int, ...] = ()
    quarter_turns: int = 0

    def forward(self, x: Tensor) -> Tensor:
        """Apply to ``x: (B, C, *S) -> (B, C, *S')`` (``S'`` has the last two axes swapped
        after an odd number of quarter turns)."""
        if self.flips:
            x = torch.flip(x, dims=[2 + a for a in self.flips])
        if self.quarter_turns:
            x = torch.rot90(x, self.quarter_turns, dims=(-2, -1))
        return x

    def inverse(self, y: Tensor) -> Tensor:
        """Undo :meth:`forward` on a network output ``(B, K, *S')``."""
        if self.quarter_turns:
            y = torch.rot90(y, -self.quarter_turns, dims=(-2, -1))
        if self.flips:
            y = torch.flip(y, dims=[2 + a for a in self.flips])
        return y


def transforms(
    spatial_dims: int, enabled: bool = True, flips: str | None = None
) -> list[Transform]:
    """The TTA transforms for ``spatial_dims`` (identity first); only identity when disabled.

    ``flips`` is the model's training symmetry (``data.flips``): ``"all"`` (module doc) or
    ``"last_axis"`` (identity and the left-right mirror); ``None`` is ``"all"``.
    """
    if not enabled:
        return [Transform()]
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims: expected 1, 2 or 3, got {spatial_dims!r}")
    if flips == "last_axis":
        return [Transform(), Transform(flips=(spatial_dims - 1,))]
    if flips not in (None, "all"):
        raise ValueError(f"flips: expected 'all' or 'last_axis', got {flips!r}")
    subsets = [
        tuple(c)
        for r in range(spatial_dims + 1)
        for c in itertools.combinations(range(spatial_dims), r)
    ]
    if spatial_dims != 2:
        return [Transform(flips=s) for s in subsets]
    return [Transform(flips=f, quarter_turns=k) for f in ((), (0,)) for k in range(4)]


def model_flips(metadata: Mapping[str, Any] | None) -> str:
    """The flips a trained model saw (``metadata["flips"]``); ``"all"`` for model files written
    before it was recorded."""
    value = (metadata or {}).get("flips")
    return value if value in ("all", "last_axis") else "all"


def averaged(network: Callable[[Tensor], Tensor], x: Tensor, tfs: list[Transform]) -> Tensor:
    """``mean_t t^-1(network(t(x)))`` over ``tfs``: ``(B, C, *S) -> (B, K, *S_out)`` float32."""
    if not tfs:
        raise ValueError("tfs: expected at least one transform (the identity)")
    total = tfs[0].inverse(network(tfs[0].forward(x)))
    for t in tfs[1:]:
        total = total + t.inverse(network(t.forward(x)))
    return total / len(tfs) if len(tfs) > 1 else total
