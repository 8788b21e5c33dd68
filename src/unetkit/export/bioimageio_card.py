"""The human side of a bioimage.io package: its model card (``README.md``) and cover image."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.model import UNet, summarize


def label_colours(k: int) -> np.ndarray:
    """``(max(k, 2), 3)`` uint8 colours: black background, then a fixed bright palette."""
    palette = np.array(
        [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
         [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]],
        dtype=np.uint8,
    )  # fmt: skip
    reps = -(-max(k, 2) // len(palette))
    return np.tile(palette, (reps, 1))[: max(k, 2)]


def _plane(array: np.ndarray) -> np.ndarray:
    """A 2D view of ``(*S)``: 1D repeated into rows, 3D its middle slice."""
    if array.ndim == 1:
        return np.repeat(array[None], max(8, array.shape[0] // 8), axis=0)
    if array.ndim == 3:
        return array[array.shape[0] // 2]
    return array


def cover_png(image: np.ndarray, logits: np.ndarray) -> bytes:
    """The test image (first channel, grey) beside its predicted labels, 2:1, as PNG bytes.

    ``image: (C, *S)`` raw; ``logits: (K, *S_out)``; a valid-mode output is centred on the
    image's grid.
    """
    from PIL import Image

    grey = _plane(image[0].astype(np.float64))
    lo, hi = np.percentile(grey, [1, 99])
    grey8 = (np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    labels = (logits[0] > 0).astype(np.int64) if logits.shape[0] == 1 else logits.argmax(0)
    plane = _plane(labels)
    canvas = np.zeros((*grey8.shape, 3), np.uint8)
    off = [(a - b) // 2 for a, b in zip(grey8.shape, plane.shape, strict=True)]
    canvas[off[0] : off[0] + plane.shape[0], off[1] : off[1] + plane.shape[1]] = label_colours(
        int(logits.shape[0])
    )[plane]
    left = np.repeat(grey8[..., None], 3, axis=2)
    both = Image.fromarray(np.concatenate([left, canvas], axis=1))
    h = max(128, both.height)
    both = both.resize((2 * h, h), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    both.save(buf, format="PNG")
    return buf.getvalue()


def _table(rows: Sequence[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def model_card(
    title: str,
    model: UNet,
    meta: Mapping[str, Any],
    steps: Sequence[Mapping[str, Any]],
    run_info: Mapping[str, Any],
) -> str:
    """The package's ``README.md``: what the model is, what it was trained on, how it scored,
    how to use and validate it and how to cite it."""
    from unetkit.version import __version__

    c = model.config
    summary = summarize(c)
    config = run_info.get("config") or {}
    data = run_info.get("data") or {}
    metrics = run_info.get("metrics") or {}
    names = meta.get("class_names") or [str(i) for i in range(max(2, c.out_channels))]
    data_rows = [
        ("dataset", str((config.get("data") or {}).get("path") or "not recorded")),
        ("classes", ", ".join(map(str, names))),
        ("ignore label", str(meta.get("ignore_index"))),
        ("input channels", str(c.in_channels)),
        ("training patch", "x".join(map(str, meta.get("patch_size") or [])) or "-"),
        *[(str(k), str(v)) for k, v in data.items()],
    ]
    metric_rows = [(str(k), str(v)) for k, v in metrics.items()] or [("-", "not recorded")]
    train = config.get("train") or {}
    recipe = ", ".join(
        f"{k}={train[k]}" for k in ("loss", "optimizer", "lr", "epochs", "batch_size") if k in train
    )
    return "\n".join(
        [
            f"# {title}",
            "",
            f"A {c.spatial_dims}D U-Net for semantic segmentation, trained and exported with "
            f"unetkit {__version__}. Input: raw intensities (the package normalises them); "
            "output: one logit per class and pixel.",
            "",
            "## Architecture",
            "",
            "```",
            summary.format_table(),
            "```",
            "",
            "## Training data",
            "",
            _table(data_rows),
            "",
            f"Recipe: {recipe or 'not recorded'}.",
            "",
            "## Pre-processing",
            "",
            "```json",
            json.dumps(list(steps), indent=1),
            "```",
            "",
            "## Validation",
            "",
            "Metrics on the held-out validation images at the best epoch (Dice and IoU averaged "
            "over foreground classes):",
            "",
            _table(metric_rows),
            "",
            "To validate on unseen data: predict with any bioimage.io consumer, take the argmax "
            "over the channel axis (a single channel: logit > 0) and compare with your labels, "
            "e.g. with `unetkit evaluate`.",
            "",
            "## How to cite",
            "",
            "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
            "Image Segmentation. MICCAI 2015. doi:10.1007/978-3-319-24574-4_28",
            "",
        ]
    )


def run_info(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a run folder says about its model, for the card: its resolved ``config`` and the
    ``metrics`` of its best validation epoch (``metrics.csv``); empty where they are absent
    (a bare model file)."""
    import csv

    from unetkit.configtools import load_yaml

    path = Path(model_path)
    folder = path if path.is_dir() else path.parent
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        info["config"] = load_yaml(str(folder / "config.yaml"))
    try:
        with (folder / "metrics.csv").open(encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("val_dice")]
    except OSError:
        rows = []
    if rows:
        best = max(rows, key=lambda r: float(r["val_dice"]))
        keep = ("epoch", "val_dice", "val_iou", "val_loss")
        info["metrics"] = {
            k: v for k, v in best.items() if k in keep or k.startswith(("dice_", "iou_"))
        }
    return info
