"""What a model trained with an instance target stores about it: :class:`InstanceSpec`.

Saved in the model file's extra metadata under the key ``"instances"`` (a JSON object, see
:meth:`InstanceSpec.to_dict`). A model without that key was trained without an instance target.

The convention for the network's outputs: three of its output channels (``channels``, default
the first three) are the softmax of background / interior / border. ``class_of_channel`` maps
every output channel to a class of the dataset's ``masks/``, so that the model's plain class
map stays the dataset's own: for a binary dataset trained on the boundary target alone,
``(0, 1, 1)`` (interior and border are both "nucleus").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetkit.errors import ModelFileError
from unetkit.instances.postprocess import InstanceParams
from unetkit.instances.targets import NUM_BOUNDARY_CLASSES, BorderMode

KEY = "instances"
_FIELDS = ("width", "border", "channels", "class_of_channel", "params")


@dataclass(frozen=True)
class InstanceSpec:
    """The instance target a model learnt and how to read its outputs (module doc).

    Attributes:
        width: border width of the boundary target (:func:`boundary_target`).
        border: ``"touching"`` or ``"contour"``.
        channels: output channels holding background, interior, border probabilities.
        class_of_channel: the dataset class of each output channel, for the plain class map.
        params: the post-processing parameters (tuned on validation images by training).
    """

    width: int = 2
    border: BorderMode = "touching"
    channels: tuple[int, int, int] = (0, 1, 2)
    class_of_channel: tuple[int, ...] = (0, 1, 1)
    params: InstanceParams = field(default_factory=InstanceParams)

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"InstanceSpec.width must be an int >= 1, got {self.width!r}")
        if self.border not in ("touching", "contour"):
            raise ValueError(
                f"InstanceSpec.border must be 'touching' or 'contour', got {self.border!r}"
            )
        ch = tuple(self.channels)
        n = len(self.class_of_channel)
        if (
            len(ch) != NUM_BOUNDARY_CLASSES
            or len(set(ch)) != 3
            or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n for c in ch)
        ):
            raise ValueError(
                f"InstanceSpec.channels must be 3 distinct output channels in [0, {n}), "
                f"got {self.channels!r}"
            )
        if any(
            isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in self.class_of_channel
        ):
            raise ValueError(
                f"InstanceSpec.class_of_channel must hold class labels >= 0, got "
                f"{self.class_of_channel!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, stored under :data:`KEY` in the model's metadata."""
        return {
            "width": self.width,
            "border": self.border,
            "channels": list(self.channels),
            "class_of_channel": list(self.class_of_channel),
            "params": self.params.to_dict(),
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], source: str) -> InstanceSpec | None:
        """The spec stored in a model's metadata, or None if it has none.

        Raises:
            ModelFileError: the stored spec is not valid (one line naming ``source``).
        """
        raw = metadata.get(KEY)
        if raw is None:
            return None
        try:
            if not isinstance(raw, dict):
                raise ValueError(f"expected an object, got {type(raw).__name__}")
            unknown = sorted(set(raw) - set(_FIELDS))
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(unknown)}")
            values = dict(raw)
            for key in ("channels", "class_of_channel"):
                if key in values:
                    values[key] = tuple(values[key])
            if "params" in values:
                values["params"] = InstanceParams.from_dict(dict(values["params"]))
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(
                f"{source}: its stored instance settings ({KEY!r}) are not valid: {exc}"
            ) from None

    def boundary_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """``(3, *spatial)`` background / interior / border from all ``(C, *spatial)`` outputs."""
        probs = np.asarray(probabilities)
        if probs.ndim < 2 or probs.shape[0] != len(self.class_of_channel):
            raise ValueError(
                f"probabilities must have {len(self.class_of_channel)} channels (C, *spatial), "
                f"got shape {probs.shape}"
            )
        return probs[list(self.channels)]

    def class_map(self, probabilities: np.ndarray) -> np.ndarray:
        """The dataset's class map ``(*spatial)`` int64: the class of the most likely channel."""
        probs = np.asarray(probabilities)
        if probs.ndim < 2 or probs.shape[0] != len(self.class_of_channel):
            raise ValueError(
                f"probabilities must have {len(self.class_of_channel)} channels (C, *spatial), "
                f"got shape {probs.shape}"
            )
        lookup = np.asarray(self.class_of_channel, dtype=np.int64)
        return lookup[np.argmax(probs, axis=0)]
