"""What a run shows while it trains: the progress bar, one line and one metrics row per epoch.

Pure formatting: nothing here changes the run. Rows go to ``metrics.csv`` and the run's
history (:mod:`unetkit.train.report` writes them); lines go to the user.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from unetkit.train.validate import ValResult


def name_list(stems: Sequence[str], limit: int = 8) -> str:
    """``a, b, c`` (unique, in order), at most ``limit`` names then ``and N more``."""
    unique = list(dict.fromkeys(stems))
    shown = ", ".join(unique[:limit])
    return shown + (f" and {len(unique) - limit} more" if len(unique) > limit else "")


def progress_bar(epoch: int, epochs: int, first: int, total: int) -> Any:
    """A tqdm bar on stderr for the steps of ``epoch`` (0-based), starting at ``first``."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=first,
        desc=f"epoch {epoch + 1}/{epochs}",
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def epoch_row(
    epoch: int,
    step: int,
    train_loss: float,
    val: ValResult,
    lr: float,
    seconds: float,
    class_names: Sequence[str],
    *,
    partial: bool,
) -> dict[str, Any]:
    """One ``metrics.csv`` row: losses, mean and per-class Dice, IoU, learning rate, seconds;
    ``partial: 1`` for an epoch cut short (budget, signal)."""
    row: dict[str, Any] = {
        "epoch": epoch,
        "step": step,
        "train_loss": train_loss,
        "val_loss": val.loss,
        "val_dice": val.mean_dice,
        "val_iou": val.mean_iou,
        "lr": lr,
        "seconds": seconds,
    }
    if len(val.dice):  # segmentation's per-class columns
        for name, d in zip(class_names, val.dice, strict=True):
            row[f"dice_{name}"] = float(d)
    row.update(val.extra)
    if partial:
        row["partial"] = 1
    return row


def epoch_line(row: dict[str, Any], steps_per_epoch: int, total_steps: int) -> str:
    """The line printed after an epoch (a task's own ``val_*`` columns replace Dice and IoU)."""
    extra = [k for k in row if k.startswith("val_") and k not in _BASE_VAL]
    scores = "".join(f"  {k} {row[k]:.4f}" for k in extra) or (
        f"  val_dice {row['val_dice']:.4f}  val_iou {row['val_iou']:.4f}"
    )
    return (
        f"epoch {row['epoch']}/{math.ceil(total_steps / steps_per_epoch)} "
        f"step {row['step']}/{total_steps}"
        f"  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}"
        f"{scores}"
        f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
    )


_BASE_VAL = ("val_loss", "val_dice", "val_iou")


def iter_rows(history: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows of a history (for callers that print a summary)."""
    yield from history
