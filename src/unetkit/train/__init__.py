"""Training pieces: losses, the deep-supervision helper and the U-Net border weight map; and
:func:`fit`, the whole run (:func:`unetkit.workflow.fit`).

``fit`` lives in :mod:`unetkit.workflow` because it ends with the int8 calibration, which is
inference code; it is looked up on first use, so that importing ``unetkit.train`` never
imports ``unetkit.infer``.
"""

from __future__ import annotations

from typing import Any

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


def __getattr__(name: str) -> Any:
    if name == "fit":
        from unetkit.workflow import fit

        return fit
    raise AttributeError(f"module 'unetkit.train' has no attribute {name!r}")


__all__ = [
    "CrossEntropyLoss",
    "DiceCELoss",
    "FocalLoss",
    "SoftDiceLoss",
    "WeightedCrossEntropyLoss",
    "border_weight_map",
    "deep_supervision_loss",
    "fit",
    "make_loss",
]
