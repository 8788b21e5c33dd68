"""The one place where the network is called during inference.

Every prediction path (whole image, tiles, test-time augmentation, export checks) goes through
:func:`run_network`, so a faster execution path (channels-last, reduced precision, folded
batch norm; see ``unetkit.infer.optimize``) can be routed in here without touching the tiling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def run_network(model: nn.Module, batch: Tensor) -> Tensor:
    """Run ``model`` in eval mode without autograd: ``(B, C_in, *S) -> (B, K, *S_out)`` float32.

    The model's train/eval state is restored afterwards, so a model that was training keeps
    training. The output is always ``float32`` on the input's device.
    """
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            out = model(batch)
    finally:
        if was_training:
            model.train()
    return out.float()
