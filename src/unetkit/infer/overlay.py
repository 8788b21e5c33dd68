"""Colour overlays of predicted labels on their image (``unetkit predict --overlay``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.io.atomic import atomic_write

# Colours of classes 1.. in overlays (class 0 is left uncoloured); cycles for more classes.
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    dtype=np.float32,
)



def _display(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` raw image -> ``(H, W, 3)`` float32 in 0..255 (percentile-stretched)."""
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    rgb = rgb.astype(np.float32)
    lo, hi = np.percentile(
        rgb[:, :: max(1, rgb.shape[1] // 512), :: max(1, rgb.shape[2] // 512)], (1, 99)
    )
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    return np.clip((np.moveaxis(rgb, 0, -1) - lo) * scale, 0, 255)


def overlay_image(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours into a 2D image: ``(C, H, W)``, ``(H, W)`` -> uint8 ``(H, W, 3)``.

    Class 0 stays uncoloured; class ``k >= 1`` gets ``PALETTE[(k - 1) % len(PALETTE)]``.
    """
    base = _display(image)
    fg = labels > 0
    colours = PALETTE[(np.maximum(labels, 1) - 1) % len(PALETTE)]
    base[fg] = (1 - alpha) * base[fg] + alpha * colours[fg]
    return base.astype(np.uint8)


def write_overlay(path: Path, image: np.ndarray, labels: np.ndarray) -> None:
    """Write the overlay PNG of ``labels`` on ``image`` (a volume: its middle slice)."""
    from PIL import Image

    if labels.ndim == 3:  # a volume: its middle slice
        mid = labels.shape[0] // 2
        image, labels = image[:, mid], labels[mid]
    with atomic_write(path, "wb") as fh:
        Image.fromarray(overlay_image(image, labels)).save(fh, format="PNG")
