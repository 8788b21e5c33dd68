"""Batch-norm statistics synchronised across processes (``train.sync_batchnorm``)."""

from __future__ import annotations

from torch import nn


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``model`` by a synchronised one, in place.

    On GPUs PyTorch's :class:`torch.nn.SyncBatchNorm`; state-dict keys are unchanged.
    """
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return converted
