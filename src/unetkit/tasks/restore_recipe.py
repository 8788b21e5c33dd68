"""The recipe's choices for ``task=restore``, on top of the segmentation recipe.

Denoising needs context of a few dozen pixels, not the whole-object view segmentation needs, and
its loss is dense (every pixel, or a share of them for blind-spot training), so a short run
gains most from many small, cheap steps: three levels, a ``64``-pixel patch (``96`` for longer
budgets; ``32``/``48`` in 3D), ``16`` patches per step, and the learning rate a regression
tolerates (``1e-3``). No normalisation layers: batch norm's running statistics lag behind the
weights early in a run (the regression output shifts with them, where a segmentation's argmax
hardly moves), and group or instance norm would make a tile's output depend on the tile's size.
Settings the caller gave are kept, as with the segmentation recipe.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from unetkit.config import RunConfig
from unetkit.train.recipe import DataSummary


def restore_settings(summary: DataSummary, max_minutes: float | None) -> dict[str, Any]:
    """Dotted ``section.field`` keys -> values for a restoration run."""
    nd = summary.spatial_dims
    long_run = (max_minutes if max_minutes is not None else 30.0) > 10
    side = {1: 1024, 2: 96 if long_run else 64, 3: 48 if long_run else 32}[nd]
    side = min(side, max(8, min(summary.median_shape) // 4 * 4))
    base = 32 if long_run else 16
    return {
        "data.patch_size": (side,) * nd,
        "model.widths": (base, 2 * base, 4 * base),
        "model.norm": "none",
        "train.batch_size": 16 if nd < 3 else 4,
        "train.lr": 1e-3,
    }


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
