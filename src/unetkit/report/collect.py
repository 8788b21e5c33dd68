"""What a run report shows, read from a run folder (and optionally an evaluation JSON).

:func:`collect` reads ``config.yaml``, ``metrics.csv`` and ``model.safetensors`` of a run, the
architecture summary (``unetkit info``), and predicts up to :data:`MAX_IMAGES` validation
images of the run's own split to draw layered overlays (image, truth, prediction) and to score
each image; the worst come first. Nothing here writes a file.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import UnetkitError

MAX_IMAGES = 32
"""Validation images predicted and scored for the report (the worst are shown first)."""
MAX_PIXELS = 4_000_000
"""Larger validation images are left out of the report (predicted whole, without tiling)."""


@dataclass
class Overlay:
    """One validation image as three same-size PNG data URIs (image, truth, prediction)."""

    name: str
    image: str
    truth: str
    prediction: str


@dataclass
class RunContent:
    """Everything a report shows (see :func:`collect`)."""

    run: Path
    config_yaml: str
    config: dict[str, Any]
    history: list[dict[str, str]]
    metadata: dict[str, Any]
    architecture: str
    class_names: list[str]
    data_lines: list[str] = field(default_factory=list)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    overlays: list[Overlay] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    card: str = ""


def png_uri(array: np.ndarray) -> str:
    """``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 -> a ``data:image/png;base64`` URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plane(a: np.ndarray, spatial_dims: int) -> np.ndarray:
    """``(*spatial)`` -> 2D: the middle slice of 3D, 1D stretched into rows."""
    if spatial_dims == 3:
        return a[a.shape[0] // 2]
    if spatial_dims == 1:
        return np.repeat(a[None], 16, axis=0)
    return a


def _layers(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, k: int, name: str) -> Overlay:
    from unetkit.export.bioimageio_card import label_colours

    nd = truth.ndim
    img = image[:3] if image.shape[0] >= 3 else image[:1]
    img = np.stack([_plane(c, nd) for c in img])
    lo, hi = np.percentile(img, [1, 99])
    img = (np.clip((img - lo) / max(float(hi - lo), 1e-8), 0, 1) * 255).astype(np.uint8)
    base = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    colours = label_colours(k)

    def rgba(labels: np.ndarray) -> np.ndarray:
        plane = np.clip(_plane(labels, nd), 0, len(colours) - 1).astype(np.int64)
        out = np.zeros((*plane.shape, 4), np.uint8)
        out[..., :3] = colours[plane]
        out[..., 3] = np.where(plane > 0, 255, 0)
        return out

    return Overlay(name, png_uri(base), png_uri(rgba(truth)), png_uri(rgba(pred)))


def read_history(run: Path) -> list[dict[str, str]]:
    """The rows of ``metrics.csv`` (empty when it is absent)."""
    try:
        with (run / "metrics.csv").open(encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except OSError:
        return []


def check_run(run: Path) -> None:
    """Refuse a folder that is not a unetkit run (one line)."""
    if not run.is_dir():
        raise UnetkitError(f"{run}: no such run folder")
    if not (run / "config.yaml").is_file() or not (run / "model.safetensors").is_file():
        raise UnetkitError(
            f"{run}: not a unetkit run (no config.yaml and model.safetensors); give a folder "
            f"written by unetkit train"
        )


def read_evaluation(path: Path) -> dict[str, Any]:
    """An ``unetkit evaluate --json`` file, checked for its three parts."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnetkitError(f"--evaluation {path}: not readable as JSON ({exc})") from None
    if not isinstance(data, dict) or not {"mean", "per_class", "per_image"} <= set(data):
        raise UnetkitError(
            f"--evaluation {path}: not an 'unetkit evaluate --json' file (needs mean, "
            f"per_class and per_image)"
        )
    return data


def score_and_draw(content: RunContent, model: Any, prepared: Any) -> None:
    """Predict the validation images of ``prepared``: per-image Dice/IoU and overlays."""
    import torch

    from unetkit.infer.engine import run_network
    from unetkit.metrics.overlap import confusion_matrix, dice_from_confusion, iou_from_confusion

    task = content.metadata.get("task", "segment")
    if task != "segment":  # no class maps to overlay: val_psnr/val_ssim are in the curves table
        content.notes.append(f"task={task}: validation overlays and Dice are for segmentation")
        return
    k = prepared.num_classes
    ignore = content.metadata.get("ignore_index")
    shown = int((content.config.get("train") or {}).get("overlays", 4)) or 4
    scored = []
    for i, s in enumerate(prepared.val[:MAX_IMAGES]):
        if s.mask.size > MAX_PIXELS:  # whole-image inference here; tiles are predict's job
            content.notes.append(f"{s.stem or i}: larger than {MAX_PIXELS:,} pixels; not shown")
            continue
        logits = run_network(model, torch.from_numpy(np.ascontiguousarray(s.image))[None])[0]
        pred = (logits[0] > 0).long() if logits.shape[0] == 1 else logits.argmax(0)
        pred_np = pred.numpy().astype(np.int64)
        conf = confusion_matrix(pred_np, s.mask.astype(np.int64), k, ignore)
        dice, iou = dice_from_confusion(conf), iou_from_confusion(conf)
        fg = [c for c in range(1 if k > 1 else 0, k) if c != ignore]
        row = {
            "image": s.stem or str(i),
            "dice": float(np.nanmean(dice[fg])) if np.isfinite(dice[fg]).any() else float("nan"),
            "iou": float(np.nanmean(iou[fg])) if np.isfinite(iou[fg]).any() else float("nan"),
        }
        row.update({f"dice {content.class_names[c]}": float(dice[c]) for c in fg})
        scored.append((row, s, pred_np))
    scored.sort(key=lambda t: (np.nan_to_num(t[0]["dice"], nan=2.0), t[0]["image"]))
    content.per_image = [row for row, _, _ in scored]
    for row, s, pred_np in scored[:shown]:
        content.overlays.append(_layers(s.image, s.mask, pred_np, k, row["image"]))


def curves_png(history: list[dict[str, str]]) -> str | None:
    """Loss and validation Dice/IoU per epoch (from ``metrics.csv``) as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import io

    import matplotlib.pyplot as plt

    def column(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in history]

    if not history:
        return None
    epochs = column("epoch")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, column("train_loss"), "o-", label="train")
    ax1.plot(epochs, column("val_loss"), "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss")
    ax1.legend()
    ax2.plot(epochs, column("val_dice"), "o-", label="Dice")
    ax2.plot(epochs, column("val_iou"), "o-", label="IoU")
    ax2.set(xlabel="epoch", ylabel="validation (foreground mean)", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
