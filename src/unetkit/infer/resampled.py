"""One image predicted at the model's target spacing, its outputs brought back to its grid.

    image (C, *S) at s -> linear -> (C, *S') at target -> run -> (K, *S') -> linear -> (K, *S)

``run`` is whatever the caller predicts (class probabilities, instance maps' probabilities,
restored intensities); the way back interpolates those continuous outputs, never labels, and
lands on exactly the input's shape, so labels, instance ids and restored images are made on
the input's own grid. Used by the API (:func:`unetkit.infer.predictor.predict_full`), the
instance and restoration paths; file groups go through :mod:`unetkit.infer.spacing`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from unetkit.infer.band import class_argmax
from unetkit.train.resample import needs_resampling, resampled_shape, zoom_to


def model_target_spacing(metadata: Mapping[str, Any] | None) -> tuple[float, ...] | None:
    """The spacing a trained model expects (``metadata["target_spacing"]``), or ``None``."""
    value = (metadata or {}).get("target_spacing")
    return None if not value else tuple(float(v) for v in value)


def checked_spacing(spacing: Sequence[float] | None, spatial_dims: int) -> tuple[float, ...] | None:
    """``spacing`` as floats, one positive finite number per spatial axis (or ``None``).

    Raises:
        ValueError: another number of values, or a value that is not positive and finite.
    """
    if spacing is None:
        return None
    values = tuple(float(v) for v in spacing)
    if len(values) != spatial_dims or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"spacing: expected {spatial_dims} positive numbers (one per spatial axis, first "
            f"axis first), got {list(spacing)}"
        )
    return values


def labels_of(
    probabilities: np.ndarray, class_of_channel: Sequence[int] | None, label_dtype: Any
) -> np.ndarray:
    """``(K, *S)`` probabilities -> ``(*S)`` labels: the most likely channel, mapped to its
    class for an instance model (``class_of_channel``); a sigmoid model's ``(2, *S)``
    probabilities give 1 where ``p > 0.5``. The first channel wins ties, as ``argmax`` does
    (:func:`unetkit.infer.band.class_argmax`, the comparison pass the tiled path uses)."""
    winner = class_argmax(torch.from_numpy(np.ascontiguousarray(probabilities))).numpy()
    if class_of_channel is not None and probabilities.shape[0] == len(class_of_channel):
        winner = np.asarray(class_of_channel)[winner]
    return winner.astype(label_dtype, copy=False)


def run_at_spacing(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    spacing: Sequence[float] | None,
    target: Sequence[float] | None,
) -> np.ndarray | None:
    """``run`` on ``image (C, *S)`` resampled from ``spacing`` to ``target``, its ``(K, *S')``
    float output brought back to ``(K, *S)``; ``None`` when the grid does not change there
    (either spacing unknown, or the same voxel counts): the caller then predicts as it is."""
    if not needs_resampling(image.shape[1:], spacing, target):
        return None
    assert spacing is not None and target is not None  # needs_resampling says so
    shape = resampled_shape(image.shape[1:], spacing, target)
    out = run(zoom_to(np.asarray(image, dtype=np.float32), shape, order=1))
    return zoom_to(np.asarray(out, dtype=np.float32), image.shape[1:], order=1)
