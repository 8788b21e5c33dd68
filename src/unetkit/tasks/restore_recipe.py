"""The recipe's choices for ``task=restore``, on top of the segmentation recipe.

Denoising needs context of a few dozen pixels, not the whole-object view segmentation needs, and
its loss is dense (every pixel, or a share of them for blind-spot training), so a short run
gains most from many small, cheap steps: three levels, a ``64``-pixel patch (``96`` for longer
budgets; ``32``/``48`` in 3D), ``16`` patches per step, and the learning rate a regression
tolerates (``1e-3``). No normalisation layers: batch norm's running statistics lag behind the
weights early in a run (the regression output shifts with them, where a segmentation's argmax
hardly moves), and group or instance norm would make a tile's output depend on the tile's size.

Self-supervised (blind-spot) training replaces the masked pixels by the median of their
neighbourhood without the pixel (N2V2's choice) rather than by one random neighbour
(Noise2Void's), in 5% of the pixels: in ``benchmarks/restore.py`` (self-supervised, 2.5
minutes each, 6 held-out EM images with Poisson-Gaussian noise, a loaded 2-core machine) the
median at 5% gave 22.06 dB PSNR / 0.733 SSIM, a random neighbour 21.36 / 0.679 at 2% and
21.35 / 0.674 at 5%, the median at 10% 21.43 / 0.695. The dataclass defaults stay
Noise2Void's, so runs written before this choice resume exactly as they were trained.
Settings the caller gave are kept, as with the segmentation recipe.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from unetkit.config import RunConfig
from unetkit.train.recipe import DataSummary

#: the share of each patch's pixels masked in self-supervised training (see the module doc)
BLIND_SPOT_FRACTION = 0.05


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
        "restore.blind_spot_replace": "median",
        "restore.blind_spot_fraction": BLIND_SPOT_FRACTION,
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
    sections: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}, "restore": {}}
    for key, value in chosen.items():
        section, name = key.split(".", 1)
        sections[section][name] = value
    return (
        replace(
            config,
            model=replace(config.model, **sections["model"]),
            data=replace(config.data, **sections["data"]),
            train=replace(config.train, **sections["train"]),
            restore=replace(config.restore, **sections["restore"]),
        ),
        chosen,
    )
