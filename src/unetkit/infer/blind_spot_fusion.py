"""Blind-spot fusion: a self-supervised restoration combined with each pixel's own value.

A blind-spot network (Noise2Void, ``restore.mode=self_supervised``) predicts every pixel from
its neighbours, never from the pixel itself, so its output ``mu`` ignores what the noisy value
``y`` of the pixel says. With the prediction's error ``mu - s`` and the noise ``y - s``
independent (the network never saw the pixel's noise), of variances ``v_p`` and ``v_n``, the
minimum-mean-square combination of the two is ``mu + w (y - mu)`` with
``w = v_p / (v_p + v_n) = 1 - v_n / E[(y - mu)^2]`` (Laine et al. 2019 do this per pixel with a
learnt prior; here ``w`` varies with the intensity, as Poisson noise does). Both numbers come
from the image itself, per intensity bin of ``mu`` (equal-count bins):

* ``E[(y - mu)^2]``: the mean squared residual in the bin;
* ``v_n``: from differences of the residual between adjacent pixels (along every axis), where
  the smooth prediction error mostly cancels and the independent noise adds up:
  ``median(d^2) / (2 * 0.4549)`` (the median of a squared normal is 0.4549 times its variance;
  the median keeps edges, where the error does not cancel, from inflating it).

``w`` is clipped to ``[0, 1]`` and interpolated between bin centres. Where the estimate of
``v_n`` is too high (texture at the pixel scale counts as noise) ``w`` is smaller than it
should be: the fusion then errs toward the network's output.
"""

from __future__ import annotations

import itertools

import numpy as np

#: median of ``z^2`` for a standard normal ``z``
_MEDIAN_CHI2_1 = 0.4549


def fusion_weights(noisy: np.ndarray, mu: np.ndarray, bins: int = 16) -> tuple[np.ndarray, ...]:
    """``(centres (K,), w (K,))``: bin centres of ``mu`` and the weight of ``noisy`` there, for
    one channel ``(*S)``."""
    r = (noisy - mu).astype(np.float64)
    diffs, means = [], []
    for axis in range(r.ndim):
        if r.shape[axis] < 2:
            continue
        lo = [slice(None)] * r.ndim
        hi = [slice(None)] * r.ndim
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        diffs.append((r[tuple(hi)] - r[tuple(lo)]).ravel())
        means.append(((mu[tuple(hi)] + mu[tuple(lo)]) / 2).ravel())
    if not diffs:
        return np.zeros(1), np.zeros(1)
    d2, m = np.concatenate(diffs) ** 2, np.concatenate(means)
    edges = np.unique(np.quantile(mu, np.linspace(0.0, 1.0, bins + 1)))
    centres, weights = [], []
    for k, (lo_v, hi_v) in enumerate(itertools.pairwise(edges)):
        last = k == len(edges) - 2
        in_bin = (mu >= lo_v) & ((mu <= hi_v) if last else (mu < hi_v))
        pairs = (m >= lo_v) & ((m <= hi_v) if last else (m < hi_v))
        if in_bin.sum() < 16 or pairs.sum() < 16:
            continue
        noise = float(np.median(d2[pairs])) / (2 * _MEDIAN_CHI2_1)
        total = float(np.mean(r[in_bin] ** 2))
        centres.append(float(mu[in_bin].mean()))
        weights.append(0.0 if total <= 0 else float(np.clip(1.0 - noise / total, 0.0, 1.0)))
    if not centres:
        return np.zeros(1), np.zeros(1)
    return np.asarray(centres), np.asarray(weights)


def fuse_blind_spot(noisy: np.ndarray, restored: np.ndarray, bins: int = 16) -> np.ndarray:
    """``noisy (C, *S)``, blind-spot ``restored (C, *S)`` (same units) -> fused ``(C, *S)``
    float32: ``restored + w (noisy - restored)`` with ``w`` per channel and intensity (see the
    module doc). Channels are fused independently."""
    if noisy.shape != restored.shape:
        raise ValueError(
            f"noisy and restored: expected the same shape, got {noisy.shape} and {restored.shape}"
        )
    out = np.empty(restored.shape, dtype=np.float32)
    for c in range(restored.shape[0]):
        y, mu = noisy[c].astype(np.float64), restored[c].astype(np.float64)
        centres, w = fusion_weights(y, mu, bins)
        out[c] = mu + np.interp(mu, centres, w) * (y - mu)
    return out
