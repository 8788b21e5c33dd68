"""The band accumulator of tiled prediction (see :mod:`unetkit.infer.predictor`).

Weighted tile logits are added into a band ``(K, O_0, *N_rest)`` float32 that spans one row of
tiles along the first spatial axis; rows that no later tile touches are finalised (divided by
the summed weights, turned into labels and, on request, probabilities) and the band moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from unetkit.infer.tiling import TilePlan


def channel_argmax(logits: Tensor) -> Tensor:
    """``(K, *S)`` -> ``(*S)``: the first channel of largest value, as ``argmax(dim=0)`` gives
    it, but by a running maximum (4-5x faster than ``argmax`` over the leading axis on CPU).
    ``uint8`` for up to 256 channels, else ``int32``."""
    dtype = torch.uint8 if logits.shape[0] <= 256 else torch.int32
    best = torch.zeros(logits.shape[1:], dtype=dtype)
    top = logits[0].clone()
    for c in range(1, logits.shape[0]):
        better = logits[c] > top
        best.masked_fill_(better, c)
        torch.maximum(top, logits[c], out=top)
    return best


class Band:
    """Accumulates weighted tile logits over one row of tiles and finalises finished rows."""

    def __init__(
        self,
        plan: TilePlan,
        out_channels: int,
        labels: np.ndarray,
        probabilities: np.ndarray | None,
        class_of_channel: Sequence[int] | None = None,
    ) -> None:
        self.plan = plan
        self.lookup = None if class_of_channel is None else torch.tensor(list(class_of_channel))
        self.k = out_channels
        self.spatial = tuple(a.size for a in plan.axes)
        self.o0 = plan.axes[0].tile_out
        self.acc = torch.zeros((out_channels, self.o0, *self.spatial[1:]), dtype=torch.float32)
        self.weight_sums = [torch.from_numpy(a.weight_sum()).float() for a in plan.axes]
        rest = torch.ones((), dtype=torch.float32)
        for w in self.weight_sums[1:]:
            rest = rest[..., None] * w  # (*N_rest)
        self.rest_weight = rest
        self.labels = labels
        self.probabilities = probabilities
        self.base = 0  # image row of acc[:, 0]

    def add(self, logits: Tensor, starts: Sequence[int]) -> None:
        """Add one weighted tile ``(K, *tile_out)`` whose output starts at ``starts``."""
        dst: list[slice] = [slice(None)]
        src: list[slice] = [slice(None)]
        for axis, (a, s) in enumerate(zip(self.plan.axes, starts, strict=True)):
            n = min(a.tile_out, a.size - s)
            offset = s - self.base if axis == 0 else s
            dst.append(slice(offset, offset + n))
            src.append(slice(0, n))
        self.acc[tuple(dst)] += logits[tuple(src)]

    def finish_rows(self, until: int) -> None:
        """Finalise image rows ``[base, until)`` and move the band to start at ``until``."""
        until = min(until, self.spatial[0])
        rows = until - self.base
        if rows <= 0:
            return
        block = self.acc[:, :rows]  # (K, rows, *N_rest)
        w0 = self.weight_sums[0][self.base : until]
        weight = w0.reshape(-1, *([1] * (len(self.spatial) - 1))) * self.rest_weight
        logits = block / weight
        target = slice(self.base, until)
        if self.k == 1:
            self.labels[target] = (logits[0] > 0).numpy()
            if self.probabilities is not None:
                p = torch.sigmoid(logits[0]).numpy()
                self.probabilities[1, target] = p
                self.probabilities[0, target] = 1.0 - p
        else:
            best = channel_argmax(logits)
            if self.lookup is not None:
                best = self.lookup[best.long()]
            self.labels[target] = best.numpy()
            if self.probabilities is not None:
                self.probabilities[:, target] = torch.softmax(logits, dim=0).numpy()
        keep = self.o0 - rows
        if keep > 0:
            self.acc[:, :keep] = self.acc[:, rows:].clone()
        self.acc[:, max(keep, 0) :] = 0
        self.base = until
