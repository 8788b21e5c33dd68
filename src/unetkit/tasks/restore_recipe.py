"""The recipe's choices for ``task=restore``, on top of the segmentation recipe.

Denoising needs context of a few dozen pixels, not the whole-object view segmentation needs, and
its loss is dense (every pixel, or a share of them for blind-spot training), so it gains most
from many small, cheap steps: three levels ``16/32/64`` wide, a ``64``-pixel patch (``32`` in
3D), ``16`` patches per step, and the learning rate a regression tolerates (``1e-3``). Only a
budget over 30 minutes doubles the widths and takes ``96``-pixel patches (``48`` in 3D). No
normalisation layers: batch norm's running statistics lag behind the weights early in a run
(the regression output shifts with them, where a segmentation's argmax hardly moves), and group
or instance norm would make a tile's output depend on the tile's size.

Without a budget the run is :data:`DEFAULT_EPOCHS` epochs of :data:`DEFAULT_STEPS_PER_EPOCH`
steps (the segmentation default, two passes over the images per epoch, is a few hundred steps
here: far from converged). On the EM benchmark (``benchmarks/restore.py``, 2 CPU cores) the
supervised U-Net beat BM3D at 1200 steps and the blind-spot one at 2000 (with TTA at 1200).
Settings the caller gave are kept, as with the segmentation recipe.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from unetkit.config import RunConfig
from unetkit.train.recipe import DataSummary

#: epochs x steps of a restoration run without ``train.max_minutes``
DEFAULT_EPOCHS = 20
DEFAULT_STEPS_PER_EPOCH = 100


def restore_settings(summary: DataSummary, max_minutes: float | None) -> dict[str, Any]:
    """Dotted ``section.field`` keys -> values for a restoration run."""
    nd = summary.spatial_dims
    long_run = max_minutes is not None and max_minutes > 30
    side = {1: 1024, 2: 96 if long_run else 64, 3: 48 if long_run else 32}[nd]
    side = min(side, max(8, min(summary.median_shape) // 4 * 4))
    base = 32 if long_run else 16
    settings: dict[str, Any] = {
        "data.patch_size": (side,) * nd,
        "model.widths": (base, 2 * base, 4 * base),
        "model.norm": "none",
        "train.batch_size": 16 if nd < 3 else 4,
        "train.lr": 1e-3,
    }
    if max_minutes is None:
        settings["train.epochs"] = DEFAULT_EPOCHS
        settings["train.steps_per_epoch"] = DEFAULT_STEPS_PER_EPOCH
    return settings


def apply_restore_recipe(
    config: RunConfig, summary: DataSummary, explicit: set[str] | frozenset[str] = frozenset()
) -> tuple[RunConfig, dict[str, Any]]:
    """``config`` with :func:`restore_settings` for every key not in ``explicit``."""
    chosen = {
        k: v
        for k, v in restore_settings(summary, config.train.max_minutes).items()
        if not any(e == k or e.startswith(k + ".") or k.startswith(e + ".") for e in explicit)
    }
    sections: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    for key, value in chosen.items():
        section, name = key.split(".", 1)
        sections[section][name] = value
    return (
        replace(
            config,
            model=replace(config.model, **sections["model"]),
            data=replace(config.data, **sections["data"]),
            train=replace(config.train, **sections["train"]),
        ),
        chosen,
    )
