"""Intensity normalisation at prediction time, as recorded in a trained model's metadata.

The trainer stores ``extra["normalization"] = {"mode": "per_image" | "dataset", "mean": [per
channel] | None, "std": [per channel] | None, "clip": [lo, hi] | None}``. ``clip`` bounds are
numbers (every channel) or per-channel lists. Values are clipped first, then z-scored per
channel: ``(x - mean) / std`` with a (near-)zero std taken as 1, the convention of
:func:`unetkit.data.sampling.normalize`. In ``per_image`` mode the mean and std are the image's
own (after clipping), computed once over the whole image in bounded memory and then applied tile
by tile, so a tiled prediction sees exactly the values a whole-image one does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Mode = Literal["per_image", "dataset"]
_STD_EPS = 1e-8


def _per_channel(value: object, channels: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels or not np.isfinite(arr).all():
        raise ValueError(
            f"normalization.{name}: expected one finite number or {channels} (one per channel), "
            f"got {value!r}"
        )
    return arr


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become network inputs (see the module doc).

    Attributes:
        mode: ``"per_image"`` (the image's own mean/std) or ``"dataset"`` (stored values).
        mean, std: per-channel values for ``dataset`` mode; ignored in ``per_image`` mode.
        clip: ``(lo, hi)``, each a number or per-channel values, or ``None`` for no clipping.
    """

    mode: Mode = "per_image"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    clip: tuple[Any, Any] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("per_image", "dataset"):
            raise ValueError(
                f"normalization.mode: expected 'per_image' or 'dataset', got {self.mode!r}"
            )
        if self.mode == "dataset" and (self.mean is None or self.std is None):
            raise ValueError("normalization: mode 'dataset' needs per-channel mean and std")
        if self.clip is not None and len(self.clip) != 2:
            raise ValueError(f"normalization.clip: expected [lo, hi], got {self.clip!r}")

    @classmethod
    def from_metadata(cls, data: Mapping[str, Any] | None) -> Normalization:
        """Build from a model's ``extra["normalization"]`` mapping (``None``: per image)."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"normalization: expected a mapping, got {data!r}")
        unknown = set(data) - {"mode", "mean", "std", "clip"}
        if unknown:
            raise ValueError(f"normalization: unknown key(s) {', '.join(sorted(unknown))}")
        mean, std, clip = data.get("mean"), data.get("std"), data.get("clip")
        return cls(
            mode=data.get("mode", "per_image"),
            mean=None if mean is None else tuple(np.asarray(mean, float).reshape(-1).tolist()),
            std=None if std is None else tuple(np.asarray(std, float).reshape(-1).tolist()),
            clip=None if clip is None else (clip[0], clip[1]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The metadata form, JSON-serialisable."""
        clip = None
        if self.clip is not None:
            clip = [np.asarray(b, float).tolist() for b in self.clip]
        return {
            "mode": self.mode,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "clip": clip,
        }

    def resolve(self, image: np.ndarray) -> ResolvedNormalization:
        """Fix the per-channel numbers for one image ``(C, *spatial)``."""
        channels = int(image.shape[0])
        lo = hi = None
        if self.clip is not None:
            lo = _per_channel(self.clip[0], channels, "clip[0]")
            hi = _per_channel(self.clip[1], channels, "clip[1]")
            if (lo > hi).any():
                raise ValueError(f"normalization.clip: lo > hi in {self.clip!r}")
        if self.mode == "dataset":
            mean = _per_channel(self.mean, channels, "mean")
            std = _per_channel(self.std, channels, "std")
        else:
            mean, std = image_mean_std(image, lo, hi)
        std = np.where(std > _STD_EPS, std, 1.0)
        return ResolvedNormalization(mean=mean, std=std, lo=lo, hi=hi)


@dataclass(frozen=True)
class ResolvedNormalization:
    """Per-channel numbers for one image; :meth:`apply` works on any crop of it."""

    mean: np.ndarray
    std: np.ndarray
    lo: np.ndarray | None
    hi: np.ndarray | None

    def apply(self, x: np.ndarray, channel_axis: int = 0) -> np.ndarray:
        """Raw values with channels on ``channel_axis`` -> float32 network input, same shape.

        ``channel_axis=0`` for ``(C, *spatial)``, ``1`` for a batch ``(B, C, *spatial)``.
        """
        shape = [1] * x.ndim
        shape[channel_axis] = -1
        return self._apply(x, tuple(shape))

    def _apply(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        out = x.astype(np.float32, copy=True)
        if self.lo is not None and self.hi is not None:
            np.clip(
                out,
                self.lo.astype(np.float32).reshape(shape),
                self.hi.astype(np.float32).reshape(shape),
                out=out,
            )
        out -= self.mean.astype(np.float32).reshape(shape)
        out /= self.std.astype(np.float32).reshape(shape)
        return out


def squared_deviations(v: np.ndarray, mean: float) -> float:
    """``sum((v - mean) ** 2)`` of a float64 scratch array ``v``, which is overwritten.

    No BLAS call (``np.dot``): OpenBLAS's threads keep spinning for a while after one, and the
    network that runs next on the same cores then ran up to 7x slower (a 256² int8 U-Net:
    106 ms instead of 14).
    """
    v -= mean
    np.square(v, out=v)
    return float(v.sum())


def image_mean_std(
    image: np.ndarray,
    lo: Sequence[float] | np.ndarray | None = None,
    hi: Sequence[float] | np.ndarray | None = None,
    chunk: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of ``(C, *spatial)``, optionally after clipping.

    Two passes in float64 over chunks of ``chunk`` values, so an 8192x8192 image needs a few
    megabytes of temporaries, not a copy of the image.
    """
    channels = int(image.shape[0])
    flat = image.reshape(channels, -1)
    n = flat.shape[1]
    if n == 0:
        raise ValueError("image: has no pixels")
    mean = np.zeros(channels)
    var = np.zeros(channels)
    for c in range(channels):
        total = 0.0
        for i in range(0, n, chunk):
            v = flat[c, i : i + chunk].astype(np.float64)
            if lo is not None and hi is not None:
                np.clip(v, lo[c], hi[c], out=v)
            total += float(v.sum())
        mean[c] = total / n
        sq = 0.0
        for i in range(0, n, chunk):
            v = flat[c, i : i + chunk].astype(np.float64)
            if lo is not None and hi is not None:
                np.clip(v, lo[c], hi[c], out=v)
            sq += squared_deviations(v, float(mean[c]))
        var[c] = sq / n
    return mean, np.sqrt(var)
