"""An exponential moving average of a model's weights, kept in its optimiser's state.

The average of parameter ``p`` lives in ``optimizer.state[p]["ema"]`` (and the number of
updates in ``["ema_updates"]``), so the checkpoint that saves the optimiser saves the average
too and a resumed run continues it exactly, with no separate file.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def update_ema(model: nn.Module, optimizer: torch.optim.Optimizer, decay: float) -> None:
    """``ema <- d ema + (1 - d) p`` for every parameter, ``d = min(decay, (1 + n) / (10 + n))``.

    The first update starts the average at the current weights.
    """
    for p in model.parameters():
        state = optimizer.state[p]
        if "ema" not in state:
            state["ema"] = p.detach().clone()
            state["ema_updates"] = torch.zeros((), dtype=torch.float32)
            continue
        n = float(state["ema_updates"])
        d = min(decay, (1.0 + n) / (10.0 + n))
        state["ema"].lerp_(p.detach(), 1.0 - d)
        state["ema_updates"] += 1


@torch.no_grad()
def ema_copy(model: nn.Module, optimizer: torch.optim.Optimizer) -> nn.Module:
    """A copy of ``model`` with the averaged weights (raw ones where none was kept yet).

    Buffers (batch-norm statistics) are copied as they are.
    """
    out = copy.deepcopy(model)
    for p, q in zip(model.parameters(), out.parameters(), strict=True):
        ema = optimizer.state.get(p, {}).get("ema")
        if ema is not None:
            q.copy_(ema)
    return out
