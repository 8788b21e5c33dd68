"""P9, the statistical cost of concatenation: activation statistics through depth and at fusion.

Three measurements, all at initialisation unless said otherwise:

1. **Through depth**, without normalisation: the second moment ``E[x^2]`` of every encoder
   block's output and of every pooled map, with PyTorch's default initialisation and with the
   fan-in-aware He initialisation, for image-like inputs (z-scored synthetic cell images) and
   for white noise.
2. **At the fusion points**: mean and variance of the upsampled branch and of the skip branch
   as they enter each fusion, and of the two halves of the fused map the next convolution sees
   (its first C channels come from the upsampled branch, the last C from the skip), for every
   norm type with ``norm_placement`` ``before_concat`` and ``after_concat``.
3. **Training curves** of several of these configurations under one budget.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from unetkit.lab.common import (
    ExperimentResult,
    LabSettings,
    batches_from,
    cross_entropy,
    image_patches,
    new_figure,
    seed_everything,
    segmentation_data,
    train_steps,
)
from unetkit.model import UNet, UNetConfig

NAME = "normalization"
PRINCIPLES = ("P9",)

FUSION_CONFIGS: dict[str, dict[str, str]] = {
    "none, default init": {"norm": "none", "init": "default"},
    "none, fan-in init": {"norm": "none", "init": "kaiming"},
    "batch, after concat": {"norm": "batch", "norm_placement": "after_concat"},
    "batch, before concat": {"norm": "batch", "norm_placement": "before_concat"},
    "instance, after concat": {"norm": "instance", "norm_placement": "after_concat"},
    "instance, before concat": {"norm": "instance", "norm_placement": "before_concat"},
    "group, after concat": {"norm": "group", "norm_placement": "after_concat"},
    "group, before concat": {"norm": "group", "norm_placement": "before_concat"},
}
QUICK_TRAIN = (
    "none, default init",
    "none, fan-in init",
    "batch, after concat",
    "batch, before concat",
)


def _stats(t: Tensor) -> dict[str, float]:
    t = t.detach().double()
    return {"mean": float(t.mean()), "var": float(t.var()), "m2": float(t.square().mean())}


@torch.no_grad()
def depth_profile(model: UNet, x: Tensor) -> list[dict[str, Any]]:
    """Second moments along the encoder: each block's output, then each pooled map."""
    records: list[dict[str, Any]] = []
    hooks = []
    for i, block in enumerate(model.encoder.blocks):
        hooks.append(
            block.register_forward_hook(
                lambda _m, _i, out, i=i: records.append({"stage": f"block {i}", **_stats(out)})
            )
        )
    for i, down in enumerate(model.encoder.downs):
        hooks.append(
            down.register_forward_hook(
                lambda _m, _i, out, i=i: records.append({"stage": f"pool {i}", **_stats(out)})
            )
        )
    model.train()
    model.encoder(x)
    for h in hooks:
        h.remove()
    return records


@torch.no_grad()
def fusion_profile(model: UNet, x: Tensor) -> list[dict[str, Any]]:
    """Statistics of both branches entering each fusion and of the fused map's two halves."""
    records: dict[int, dict[str, Any]] = {}
    hooks = []
    for i, fuse in enumerate(model.decoder.fuses):

        def hook(m: nn.Module, inp: tuple[Tensor, ...], out: Tensor, i: int = i) -> None:
            up, skip = inp
            c = up.shape[1]
            records[i] = {
                "level": i,
                "up": _stats(up),
                "skip": _stats(skip),
                "fused_up_half": _stats(out[:, :c]),
                "fused_skip_half": _stats(out[:, c:]),
            }

        hooks.append(fuse.register_forward_hook(hook))
    model.train()
    model(x)
    for h in hooks:
        h.remove()
    return [records[i] for i in sorted(records)]


def run(settings: LabSettings) -> ExperimentResult:
    """Profile activation statistics for every configuration; train some under one budget."""
    if settings.quick:
        widths, size, batch, steps, train_names = (8, 16, 32, 64), 64, 4, 30, QUICK_TRAIN
    else:
        widths, size, batch, steps = (16, 32, 64, 128, 256), 64, 8, 120
        train_names = tuple(FUSION_CONFIGS)
    images, masks, source = segmentation_data(8 * batch, size, 2, settings.seed)
    x_img, image_source = image_patches(settings, batch, size, settings.seed)
    x_noise = torch.randn(x_img.shape, generator=torch.Generator().manual_seed(settings.seed))

    depth: dict[str, list[dict[str, Any]]] = {}
    for init in ("default", "kaiming"):
        seed_everything(settings.seed)
        model = UNet(UNetConfig(widths=widths, norm="none", init=init))  # type: ignore[arg-type]
        for label, x in (("images", x_img), ("white noise", x_noise)):
            depth[f"{init} init, {label}"] = depth_profile(model, x)

    fusion: dict[str, list[dict[str, Any]]] = {}
    for name, opts in FUSION_CONFIGS.items():
        seed_everything(settings.seed)
        fusion[name] = fusion_profile(UNet(UNetConfig(widths=widths, **opts)), x_img)  # type: ignore[arg-type]

    curves: dict[str, list[float]] = {}
    for name in train_names:
        seed_everything(settings.seed)
        model = UNet(UNetConfig(widths=widths, **FUSION_CONFIGS[name]))  # type: ignore[arg-type]
        curves[name] = train_steps(
            model,
            batches_from(images, masks, batch, settings.seed),
            steps,
            cross_entropy,
            device=settings.device,
        )

    def m2(key: str, stage: str) -> float:
        return next(r["m2"] for r in depth[key] if r["stage"] == stage)

    def level_factors(key: str) -> list[float]:
        return [m2(key, f"block {i + 1}") / m2(key, f"block {i}") for i in range(len(widths) - 1)]

    pool_gain = {k: m2(k, "pool 0") / m2(k, "block 0") for k in depth}
    kaiming_img = level_factors("kaiming init, images")
    default_img = level_factors("default init, images")
    branch_ratio = {
        name: [r["fused_skip_half"]["var"] / r["fused_up_half"]["var"] for r in rows]
        for name, rows in fusion.items()
    }
    final = {n: sum(c[-5:]) / 5 for n, c in curves.items()}
    best = min(final, key=final.get)  # type: ignore[arg-type]
    headline = (
        f"Without norm, fan-in init keeps the encoder's second moment within "
        f"x{min(kaiming_img):.2f}-x{max(kaiming_img):.2f} per level on images (default init: "
        f"x{min(default_img):.2f}-x{max(default_img):.2f}); max-pooling white noise raises it "
        f"x{pool_gain['kaiming init, white noise']:.2f} at the first pool (images "
        f"x{pool_gain['kaiming init, images']:.2f}); unnormalised branches differ up to "
        f"{max(max(v, 1 / v) for v in branch_ratio['none, fan-in init']):.1f}x in variance at "
        f"fusion."
    )
    numbers = {
        "data": {"statistics": image_source, "training": source},
        "widths": list(widths),
        "input_size": size,
        "batch": batch,
        "depth_profile": depth,
        "per_level_m2_factor": {k: level_factors(k) for k in depth},
        "first_pool_m2_gain": pool_gain,
        "fusion_profile": fusion,
        "fused_skip_over_up_variance": branch_ratio,
        "training": {"steps": steps, "curves": curves, "final_loss": final},
    }
    within2 = max(max(f, 1 / f) for f in kaiming_img) <= 2.0
    lead = (
        "As expected from the lead's note, with image-like inputs the fan-in-aware "
        "initialisation keeps every level within a factor of 2"
        if within2
        else "Unlike the lead's note (a factor 2 at most per level on natural-image-like inputs), "
        "on these inputs some level changes by more than a factor of 2"
    ) + (
        "; the first max-pool raises the second moment more for white noise than for images, "
        "whose neighbouring pixels are correlated, so the maximum of four adds less."
        if pool_gain["kaiming init, white noise"] > pool_gain["kaiming init, images"]
        else "; the first max-pool raises the second moment no less for images than for noise."
    )
    ratio_txt = "; ".join(f"{n}: {min(v):.2g}-{max(v):.2g}" for n, v in branch_ratio.items())
    markdown = (
        f"**normalization (P9).** A 2D U-Net with widths {list(widths)} at initialisation, in "
        f"training mode, on z-scored {size}x{size} image patches (from {image_source}, batch "
        f"{batch}) and on white noise. {headline} {lead} PyTorch's "
        f"default initialisation instead shrinks the second moment about "
        f"x{sum(default_img) / len(default_img):.2f} per level. At the fusion points, the ratio "
        f"of the skip half's variance to the upsampled half's variance in the map the next "
        f"convolution sees is, per level: {ratio_txt}. Batch and instance norm are per channel, "
        f"so after the concat they equalise the two halves as well as before it; group norm "
        f"after the concat normalises groups that each hold channels of one branch only (C is a "
        f"multiple of the group count), so it too equalises them. Under one budget of {steps} "
        f"steps the lowest final loss was reached by '{best}' "
        + "("
        + ", ".join(f"{n} {v:.3f}" for n, v in final.items())
        + ")."
    )
    fig, axes = new_figure(3, width=4.8)
    ax = axes[0]
    for i, (key, rows) in enumerate(depth.items()):
        ax.plot([r["m2"] for r in rows], f"C{i}-o", label=key)
        ax.set_xticks(range(len(rows)), [r["stage"] for r in rows], rotation=60, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("second moment E[x^2]")
    ax.set_title(
        "No norm: fan-in init holds E[x^2]; pooling noise "
        f"x{pool_gain['kaiming init, white noise']:.1f}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    for i, (name, ratios) in enumerate(branch_ratio.items()):
        ax.plot(range(len(ratios)), ratios, f"C{i}-o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("decoder level (0 = full resolution)")
    ax.set_ylabel("var(skip half) / var(upsampled half)")
    ax.set_title("Normalisation equalises the two branches", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[2]
    for name, curve in curves.items():
        ax.plot(curve, f"C{list(FUSION_CONFIGS).index(name)}-", alpha=0.8, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy")
    ax.set_title(f"One budget: lowest loss with '{best}'", fontsize=9)
    ax.legend(fontsize=7)
    return ExperimentResult(NAME, PRINCIPLES, headline, numbers, markdown, fig)
