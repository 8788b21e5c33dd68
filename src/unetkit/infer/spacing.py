"""Prediction at the model's target spacing, with the outputs on the input's own grid.

A model trained on resampled volumes (``data.target_spacing``, stored in its metadata as
``target_spacing``) sees its inputs at that spacing too. For an input of known spacing (a NIfTI
header, or ``--spacing``) whose grid changes at the target
(:func:`unetkit.train.resample.needs_resampling`):

    image (C, *S) at s -> linear -> (C, *S') at target -> network -> probabilities (K, *S')
    -> linear -> (K, *S) on the input's exact grid -> argmax -> labels (*S)

The way back interpolates probabilities, not labels (no staircase on a refined axis), and
lands on exactly the input's shape; a NIfTI output then takes the input's affine and header
(:mod:`unetkit.io.nifti`), so it is never written on another grid or in another orientation.
Inputs of unknown spacing, and inputs already at the target, are predicted as they are, bit
for bit as without a target spacing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from unetkit.errors import DataError
from unetkit.infer.predictor import Prediction
from unetkit.infer.resampled import labels_of, model_target_spacing
from unetkit.io import nifti
from unetkit.train.resample import needs_resampling, resampled_shape, zoom_to

#: ``(sources, images, probabilities) -> predictions``: the plain prediction of decoded inputs.
PredictGroup = Callable[[list[Path], list[np.ndarray], bool], list[Prediction]]


def input_spacing(
    source: Path, spatial_dims: int, declared: Sequence[float] | None = None
) -> tuple[float, ...] | None:
    """An input's voxel spacing in network axis order: its NIfTI header, else ``declared``
    (``--spacing``), else ``None``.

    Raises:
        DataError: ``declared`` has another number of axes than the model, naming the file.
    """
    if nifti.is_nifti_name(source):
        return nifti.spacing(source)
    if declared is None:
        return None
    if len(declared) != spatial_dims:
        raise DataError(
            f"{source}: --spacing {list(declared)} has {len(declared)} numbers, but the model "
            f"is {spatial_dims}D; give one per spatial axis, first axis first"
        )
    return tuple(float(v) for v in declared)


def predict_at_spacing(
    predict: PredictGroup,
    sources: Sequence[Path],
    images: Sequence[np.ndarray],
    spacings: Sequence[tuple[float, ...] | None],
    target: Sequence[float] | None,
    *,
    probabilities: bool,
    class_of_channel: Sequence[int] | None = None,
) -> list[Prediction]:
    """Predict decoded inputs ``(C, *S)``, each at ``target`` where its grid changes there
    (see the module doc), through ``predict`` (the plain path, which the others take
    unchanged). Returns one :class:`Prediction` per input on the input's own grid."""
    moved = [
        i
        for i, (im, sp) in enumerate(zip(images, spacings, strict=True))
        if target is not None and needs_resampling(im.shape[1:], sp, target)
    ]
    plain = sorted(set(range(len(images))) - set(moved))
    out: dict[int, Prediction] = {}
    if plain:
        got = predict([sources[i] for i in plain], [images[i] for i in plain], probabilities)
        out.update(zip(plain, got, strict=True))
    if moved and target is not None:
        resampled = []
        for i in moved:
            sp = spacings[i]
            if sp is None:  # pragma: no cover - needs_resampling is False without a spacing
                raise ValueError("spacing: unknown")
            shape = resampled_shape(images[i].shape[1:], sp, target)
            resampled.append(zoom_to(np.asarray(images[i], dtype=np.float32), shape, order=1))
        got = predict([sources[i] for i in moved], resampled, True)
        for i, pred in zip(moved, got, strict=True):
            if pred.probabilities is None:  # pragma: no cover - requested above
                raise RuntimeError("probabilities were requested but not computed")
            back = zoom_to(pred.probabilities, images[i].shape[1:], order=1)  # (K, *S)
            labels = labels_of(back, class_of_channel, pred.labels.dtype)
            out[i] = Prediction(labels=labels, probabilities=back if probabilities else None)
    return [out[i] for i in range(len(images))]


__all__ = ["input_spacing", "labels_of", "model_target_spacing", "predict_at_spacing"]
