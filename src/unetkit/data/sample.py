"""One training example in memory: an image, its class mask, optional instance ids, and for
image restoration its float target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """An image with its labels.

    Attributes:
        image: ``float32`` ``(C, *spatial)``, 1..3 spatial dims.
        mask: ``int64`` ``(*spatial)`` class labels, 0 = background.
        instances: ``int64`` ``(*spatial)`` object ids (0 = none), or ``None``.
        stem: a name for messages and outputs (the file stem on disk).
        target: ``float32`` ``(C_t, *spatial)``, the restored image of ``task=restore``
            (its mask is then a read-only all-zero view), or ``None``.

    Raises:
        ValueError: shapes or dtypes that do not match the contract.
    """

    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray | None = None
    stem: str = ""
    target: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image, np.ndarray) or self.image.dtype != np.float32:
            raise ValueError("image: expected a float32 numpy array (C, *spatial)")
        if not 2 <= self.image.ndim <= 4:
            raise ValueError(
                f"image: expected (C, *spatial) with 1..3 spatial dims, "
                f"got shape {self.image.shape}"
            )
        spatial = self.image.shape[1:]
        if not isinstance(self.mask, np.ndarray) or self.mask.dtype != np.int64:
            raise ValueError("mask: expected an int64 numpy array (*spatial)")
        if self.mask.shape != spatial:
            raise ValueError(f"mask: shape {self.mask.shape} != image spatial shape {spatial}")
        if self.instances is not None and (
            not isinstance(self.instances, np.ndarray)
            or self.instances.dtype != np.int64
            or self.instances.shape != spatial
        ):
            raise ValueError(f"instances: expected int64 array of shape {spatial}")
        if self.target is not None and (
            not isinstance(self.target, np.ndarray)
            or self.target.dtype != np.float32
            or self.target.ndim != self.image.ndim
            or self.target.shape[1:] != spatial
        ):
            raise ValueError(f"target: expected a float32 array (C_t, {spatial})")

    @property
    def spatial_dims(self) -> int:
        """Number of spatial dims (1, 2 or 3)."""
        return self.image.ndim - 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """``image.shape[1:]``."""
        return tuple(self.image.shape[1:])
