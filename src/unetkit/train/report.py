"""Run-folder outputs: ``metrics.csv``, ``progress.png`` and validation overlays (rank 0 only).

Every file is written atomically, so a reader never sees half a CSV or PNG.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.io.atomic import atomic_save_bytes

BASE_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice", "val_iou", "lr", "seconds")


def write_metrics_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """One row per epoch: the base columns, then per-class ``dice_<name>`` columns."""
    columns = list(BASE_COLUMNS)
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(row.get(k, "")) for k in columns})
    atomic_save_bytes(path, buf.getvalue().encode())


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.6g}"
    return value


def _figure_bytes(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def plot_progress(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """Loss curves (train and validation) and validation Dice/IoU per epoch."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax1.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    if "val_psnr" in history[-1]:  # restoration: PSNR (dB) and SSIM on two scales
        ax2.plot(epochs, [r.get("val_psnr", np.nan) for r in history], "o-", label="PSNR (dB)")
        ax2.set_ylabel("validation PSNR (dB)")
        twin = ax2.twinx()
        twin.plot(epochs, [r.get("val_ssim", np.nan) for r in history], "s--", color="C1")
        twin.set_ylabel("validation SSIM (dashed)")
        ax2.set_xlabel("epoch")
    else:
        ax2.plot(epochs, [r["val_dice"] for r in history], "o-", label="Dice")
        ax2.plot(epochs, [r["val_iou"] for r in history], "o-", label="IoU")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("validation (foreground mean)")
        ax2.set_ylim(0, 1)
        ax2.legend()
    fig.tight_layout()
    atomic_save_bytes(path, _figure_bytes(fig))


def _display(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> an ``(H, W)`` or ``(H, W, 3)`` array in 0..1 (1-99th percentile)."""
    img = image[:3] if image.shape[0] >= 3 else image[:1]
    lo, hi = np.percentile(img, [1, 99])
    img = np.clip((img - lo) / max(float(hi - lo), 1e-8), 0, 1)
    return img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)


def _middle_slice(a: np.ndarray, spatial_dims: int) -> np.ndarray:
    """The middle slice along the first spatial axis of a 3D array (channels kept)."""
    if spatial_dims != 3:
        return a
    axis = a.ndim - 3
    return np.take(a, a.shape[axis] // 2, axis=axis)


def write_overlay(
    path: Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, num_classes: int
) -> None:
    """Image, truth and prediction side by side (labels as colours over the image).

    ``image (C, *spatial)``, ``truth``/``pred`` ``(*spatial)``; 1D as curves, 3D as the middle
    slice.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    nd = truth.ndim
    if nd == 1:
        fig, ax = plt.subplots(figsize=(10, 3))
        ax.plot(image[0], color="0.4", label="signal")
        ax.step(np.arange(truth.size), truth, where="mid", label="truth")
        ax.step(np.arange(pred.size), pred, where="mid", label="prediction", alpha=0.8)
        ax.legend()
        atomic_save_bytes(path, _figure_bytes(fig))
        return
    image, truth, pred = (_middle_slice(a, nd) for a in (image, truth, pred))
    shown = _display(image)
    cmap = "tab10" if num_classes <= 10 else "tab20"
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, title, labels in zip(
        axes, ("image", "truth", "prediction"), (None, truth, pred), strict=True
    ):
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        if labels is not None:
            ax.imshow(
                np.ma.masked_equal(labels, 0),
                cmap=cmap,
                vmin=0,
                vmax=max(num_classes - 1, 1),
                alpha=0.45,
                interpolation="nearest",
            )
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    atomic_save_bytes(path, _figure_bytes(fig))
