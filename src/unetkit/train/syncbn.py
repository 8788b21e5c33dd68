"""Batch-norm statistics synchronised across processes (``train.sync_batchnorm``).

On GPUs this is PyTorch's :class:`torch.nn.SyncBatchNorm`. PyTorch's version refuses CPU
tensors, so on CPU (gloo) :class:`GlobalBatchNorm` does the same job: per-channel sums, sums of
squares and counts are all-reduced with the differentiable
``torch.distributed.nn.functional.all_reduce``, so the forward pass normalises with the
statistics of the global batch and the backward pass carries the gradient through them. With it,
``N`` processes with batch ``B`` train like one process with batch ``N*B``. State-dict keys are
unchanged (it is a ``_BatchNorm``), so saved models load as plain batch norm.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class GlobalBatchNorm(_BatchNorm):
    """Batch norm over the batch of every process: ``(B, C, *spatial) -> (B, C, *spatial)``.

    Outside training, or with one process, it is ordinary batch norm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim < 3:
            raise ValueError(f"expected (B, C, *spatial), got shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        c = input.shape[1]
        dims = [0, *range(2, input.ndim)]
        x = input.float()
        count = x.new_full((1,), x.numel() / c)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # global sums
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp(min=0.0)  # biased, as in training BN
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1.0))
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        shape = (1, c) + (1,) * (input.ndim - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm layer of ``model`` synchronise across processes, in place.

    Uses :class:`torch.nn.SyncBatchNorm` when the model is on a GPU, :class:`GlobalBatchNorm` on
    CPU. Parameters and buffers are kept (same tensors, same state-dict keys).
    """
    on_gpu = any(p.is_cuda for p in model.parameters())
    if on_gpu:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, nn.SyncBatchNorm | GlobalBatchNorm
        ):
            module.__class__ = GlobalBatchNorm  # same fields; only forward changes
    return model
