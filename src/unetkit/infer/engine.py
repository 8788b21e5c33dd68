"""The one place where the network is called during inference.

Every prediction path (whole image, tiles, test-time augmentation, export checks) goes through
:func:`run_network`, so a faster execution path (channels-last, reduced precision, folded
batch norm; see ``unetkit.infer.optimize``) can be routed in here without touching the tiling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unetkit.infer.optimize import fast_model


def run_network(model: nn.Module, batch: Tensor, *, fast: bool = True) -> Tensor:
    """Run ``model`` in eval mode without autograd: ``(B, C_in, *S) -> (B, K, *S_out)`` float32.

    ``fast``: run the optimised copy from :func:`unetkit.infer.optimize.fast_model` (batch norm
    folded into the convolutions, channels-last, bf16 only where it is measured faster on this
    processor), cached and rebuilt when the weights change; ``False`` runs the model as it is.
    The model's train/eval state is restored afterwards, so a model that was training keeps
    training. The output is always ``float32`` on the input's device.
    """
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            net = fast_model(model) if fast else model
            out = net(batch)
    finally:
        if was_training:
            model.train()
    return out.float()
