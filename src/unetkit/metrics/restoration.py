"""Image-restoration metrics: PSNR and SSIM of a restored image against its target.

Both come from scikit-image (``peak_signal_noise_ratio``, ``structural_similarity``) and
depend on a *data range*: the span of values the target can take. Unless given, it is the
target's own ``max - min`` (stated with every result, since a PSNR means little without it).
Images are ``(C, *spatial)`` with 1..3 spatial dims; SSIM averages over channels, with the
Gaussian-free 7-pixel window of scikit-image shrunk (odd, at least 3) for small images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RestorationScore:
    """PSNR (dB), SSIM and the data range both were computed with."""

    psnr: float
    ssim: float
    data_range: float


def data_range_of(target: np.ndarray) -> float:
    """``max - min`` of ``target`` (``1.0`` for a constant image, so scores stay defined)."""
    span = float(np.max(target)) - float(np.min(target))
    return span if span > 0 else 1.0


def _checked(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prediction, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction: shape {p.shape} differs from target shape {t.shape}")
    if not 2 <= t.ndim <= 4:
        raise ValueError(f"target: expected (C, *spatial) with 1..3 spatial dims, got {t.shape}")
    return p, t


def psnr(prediction: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(range^2 / MSE)``; ``inf`` when equal."""
    from skimage.metrics import peak_signal_noise_ratio

    p, t = _checked(prediction, target)
    dr = data_range_of(t) if data_range is None else float(data_range)
    if not np.any(p != t):
        return math.inf
    return float(peak_signal_noise_ratio(t, p, data_range=dr))


def ssim(prediction: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity over channels (NaN when a side is shorter than 3)."""
    from skimage.metrics import structural_similarity

    p, t = _checked(prediction, target)
    dr = data_range_of(t) if data_range is None else float(data_range)
    side = min(t.shape[1:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return math.nan
    values = [
        structural_similarity(t[c], p[c], data_range=dr, win_size=win) for c in range(t.shape[0])
    ]
    return float(np.mean(values))


def restoration_score(
    prediction: np.ndarray, target: np.ndarray, data_range: float | None = None
) -> RestorationScore:
    """PSNR and SSIM of one image with the data range used (see the module doc)."""
    dr = data_range_of(np.asarray(target)) if data_range is None else float(data_range)
    return RestorationScore(psnr(prediction, target, dr), ssim(prediction, target, dr), dr)
