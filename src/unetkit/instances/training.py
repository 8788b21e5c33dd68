"""The instance target of a training run: class masks -> the three-class boundary target.

``data.instance_target`` (:class:`unetkit.config.DataConfig`) chooses it:

* ``contour`` (what ``auto`` picks) and ``boundary``: every sample's mask becomes
  :func:`~unetkit.instances.targets.boundary_target` of its instance ids (``instances/``, or
  connected components of the mask where a sample has none): with ``border="contour"`` every
  object's rim is the border class, with ``border="touching"`` only the zones where objects
  touch; so the network has three output channels (background / interior / border), and the
  run's :class:`~unetkit.instances.spec.InstanceSpec` maps them back to the dataset's classes
  (``class_of_channel = (0, 1, 1)``): the model's plain class map is still the binary mask.
* ``none``: the masks are used as they are.
* ``auto``: ``contour`` when the dataset folder has instance truth and binary masks, else
  ``none``.

The boundary target is defined for binary masks (one object class): with several object
classes a border pixel would also need its class, which this target does not carry, so an
explicit ``boundary`` on such data is refused with one line.

Pure NumPy/SciPy, called by :func:`unetkit.train.prepare.prepare_data` before the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unetkit.data.sample import Sample
from unetkit.errors import DataError
from unetkit.instances.spec import InstanceSpec
from unetkit.instances.targets import (
    NUM_BOUNDARY_CLASSES,
    BorderMode,
    boundary_target,
    instances_from_mask,
)

#: Border width of the training target (see :mod:`unetkit.instances.targets`).
TARGET_WIDTH = 2


def wants_boundary(
    mode: str, samples: Sequence[Sample], num_classes: int, source: str, *, folder: bool = True
) -> bool:
    """Whether a run with ``data.instance_target=mode`` trains on the boundary target.

    ``folder``: the samples come from a dataset folder; ``auto`` looks for instance truth only
    there (the built-in synthetic data carries ids too, but its runs keep the class target
    unless ``boundary`` is asked for).

    Raises:
        DataError: ``boundary`` asked for on data with more than one object class.
    """
    if mode not in ("auto", "none", "boundary", "contour"):
        raise ValueError(f"instance_target must be auto, none, boundary or contour, got {mode!r}")
    if mode == "none":
        return False
    if num_classes != 2:
        if mode in ("boundary", "contour"):
            raise DataError(
                f"{source}: data.instance_target={mode} needs binary masks (background and "
                f"one object class), but the masks have {num_classes} classes; set "
                f"data.instance_target=none"
            )
        return False
    has_ids = any(s.instances is not None for s in samples)
    return mode in ("boundary", "contour") or (folder and has_ids)


def border_of(mode: str) -> BorderMode:
    """The border kind of ``data.instance_target=mode``: ``boundary`` marks only the zones where
    objects touch; ``contour`` and ``auto`` ring every object (measured better on DSB 2018 held
    out, benchmarks/README.md: the rim is on every object, so the network learns it from all of
    them, not only from the few contacts)."""
    return "touching" if mode == "boundary" else "contour"


def to_boundary_samples(
    samples: Sequence[Sample],
    *,
    ignore_index: int | None = None,
    width: int = TARGET_WIDTH,
    border: BorderMode = "touching",
) -> list[Sample]:
    """Samples whose masks are the boundary target ``(*spatial)`` int64 in ``{0, 1, 2}``.

    Each sample keeps its image and carries its instance ids (from ``instances/``, else the
    connected components of its mask), so that the border weight map and the tuning of the
    post-processing can use them. Pixels labelled ``ignore_index`` stay ignored.
    """
    out = []
    for s in samples:
        mask = s.mask
        valid = mask if ignore_index is None else np.where(mask == ignore_index, 0, mask)
        # the class mask decides what is an object; without ids, its connected components
        inst = (
            instances_from_mask(valid > 0)
            if s.instances is None
            else np.where(valid > 0, s.instances, 0)
        )
        target = boundary_target(inst, width=width, border=border).astype(np.int64)
        if ignore_index is not None:
            target[mask == ignore_index] = ignore_index
        out.append(Sample(s.image, target, inst.astype(np.int64, copy=False), s.stem))
    return out


def boundary_spec(width: int = TARGET_WIDTH, border: BorderMode = "touching") -> InstanceSpec:
    """The spec of a binary dataset trained on the boundary target (default parameters)."""
    return InstanceSpec(
        width=width,
        border=border,
        channels=tuple(range(NUM_BOUNDARY_CLASSES)),  # type: ignore[arg-type]
        class_of_channel=(0, 1, 1),
    )
