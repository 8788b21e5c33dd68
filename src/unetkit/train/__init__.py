"""Training pieces: losses, the deep-supervision helper and the U-Net border weight map.

The whole run is :func:`unetkit.fit` (:mod:`unetkit.workflow`, above ``train/`` because it ends
with the int8 calibration, which is inference code).
"""

from __future__ import annotations

from unetkit.train.losses import (
    CrossEntropyLoss,
    DiceCELoss,
    FocalLoss,
    SoftDiceLoss,
    WeightedCrossEntropyLoss,
    deep_supervision_loss,
    make_loss,
)
from unetkit.train.weight_map import border_weight_map

__all__ = [
    "CrossEntropyLoss",
    "DiceCELoss",
    "FocalLoss",
    "SoftDiceLoss",
    "WeightedCrossEntropyLoss",
    "border_weight_map",
    "deep_supervision_loss",
    "make_loss",
]
