"""P8, the compute cost of concatenation: parameters and FLOPs per decoder block, and what they buy.

A decoder block here is the fusion of the upsampled map with the skip plus the block of
convolutions after it (``decoder.fuses[i]`` and ``decoder.blocks[i]``). After a concat the first
3x3 convolution sees 2C channels instead of C: in a two-convolution block the weights grow from
``18 C^2`` to ``27 C^2``, +50%. ``concat_1x1`` first reduces 2C to C with a 1x1 convolution
(``2 C^2``), so the block costs ``20 C^2``. We count parameters exactly from the built modules,
FLOPs from a forward pass on the meta device, and train each fusion under one budget on the
synthetic data to see the validation Dice it reaches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetkit.lab.common import (
    ExperimentResult,
    LabSettings,
    batches_from,
    cross_entropy,
    mean_foreground_dice,
    new_figure,
    seed_everything,
    segmentation_data,
    train_steps,
)
from unetkit.model import UNet, UNetConfig, count_parameters, summarize
from unetkit.model.summary import conv_flops

NAME = "concat-cost"
PRINCIPLES = ("P8",)
FUSIONS = ("concat", "concat_1x1", "add", "none")


def block_cost(fusion: str, width: int, size: int = 64) -> dict[str, int]:
    """Parameters and FLOPs of the full-resolution decoder block of a U-Net with level-0 width C.

    Returns ``params`` (fusion + convolution block, norms included), ``conv_weights`` (weights
    of the convolutions only) and ``flops`` (one forward pass, batch 1, 2D input ``size``^2).
    """
    config = UNetConfig(widths=(width, 2 * width), fusion=fusion)  # type: ignore[arg-type]
    with torch.device("meta"):
        model = UNet(config)
    parts = [model.decoder.fuses[0], model.decoder.blocks[0]]
    flops = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal flops
        flops += conv_flops(m, inp[0], out)

    hooks = [
        m.register_forward_hook(hook)
        for part in parts
        for m in part.modules()
        if isinstance(m, nn.modules.conv._ConvNd)
    ]
    model(torch.empty(1, 1, size, size, device="meta"))
    for h in hooks:
        h.remove()
    return {
        "params": sum(count_parameters(p) for p in parts),
        "conv_weights": sum(
            m.weight.numel()
            for p in parts
            for m in p.modules()
            if isinstance(m, nn.modules.conv._ConvNd)
        ),
        "flops": flops,
    }


def run(settings: LabSettings) -> ExperimentResult:
    """Count the cost of every fusion at several widths; train each under one budget."""
    if settings.quick:
        block_widths = (16, 32, 64)
        n_train, n_val, size, widths, steps, batch = 32, 8, 48, (8, 16, 32), 60, 8
    else:
        block_widths = (16, 32, 64, 128, 256)
        n_train, n_val, size, widths, steps, batch = 128, 32, 64, (16, 32, 64, 128), 200, 8
    blocks = {f: {c: block_cost(f, c) for c in block_widths} for f in FUSIONS}
    model_widths = tuple(block_widths[0] * 2**i for i in range(4))
    totals = {}
    for fusion in FUSIONS:
        s = summarize(UNetConfig(widths=model_widths, fusion=fusion), 256)  # type: ignore[arg-type]
        totals[fusion] = {"params": s.total_params, "flops": s.total_flops}

    images, masks, source = segmentation_data(n_train + n_val, size, 2, settings.seed)
    train_x, train_y = images[:n_train], masks[:n_train]
    val_x, val_y = images[n_train:], masks[n_train:]
    training: dict[str, Any] = {}
    for fusion in FUSIONS:
        seed_everything(settings.seed)
        model = UNet(UNetConfig(widths=widths, fusion=fusion))  # type: ignore[arg-type]
        losses = train_steps(
            model,
            batches_from(train_x, train_y, batch, settings.seed),
            steps,
            cross_entropy,
            lr=3e-3,
            device=settings.device,
        )
        training[fusion] = {
            "params": count_parameters(model),
            "val_dice": mean_foreground_dice(model, val_x, val_y),
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
            "losses": losses,
        }

    c = block_widths[-1]
    ratio = {
        f: blocks[f][c]["params"] / blocks["none"][c]["params"] for f in ("concat", "concat_1x1")
    }
    conv_ratio = blocks["concat"][c]["conv_weights"] / blocks["none"][c]["conv_weights"]
    saving = 1 - blocks["concat_1x1"][c]["params"] / blocks["concat"][c]["params"]
    flop_saving = 1 - blocks["concat_1x1"][c]["flops"] / blocks["concat"][c]["flops"]
    dices = {f: training[f]["val_dice"] for f in FUSIONS}
    headline = (
        f"A two-conv decoder block after concat has {ratio['concat'] - 1:+.1%} parameters "
        f"(conv weights exactly {conv_ratio - 1:+.0%}); the 1x1 reduction saves "
        f"{saving:.0%} of them; validation Dice after {steps} steps: "
        + ", ".join(f"{f} {d:.3f}" for f, d in dices.items())
        + "."
    )
    numbers = {
        "block_widths": list(block_widths),
        "blocks": blocks,
        "block_param_ratio_vs_none": ratio,
        "block_conv_weight_ratio_concat_vs_none": conv_ratio,
        "concat_1x1_saving_vs_concat": {"params": saving, "flops": flop_saving},
        "model_widths": list(model_widths),
        "model_totals_at_256": totals,
        "training": {
            "data": source,
            "widths": list(widths),
            "size": size,
            "n_train": n_train,
            "n_val": n_val,
            "steps": steps,
            "batch": batch,
            "results": training,
        },
    }
    skip_dices = [dices[f] for f in ("concat", "concat_1x1", "add")]
    spread = max(skip_dices) - min(skip_dices)
    min_gap, max_gap = min(skip_dices) - dices["none"], max(skip_dices) - dices["none"]
    tot = {f: totals[f]["params"] / totals["none"]["params"] - 1 for f in FUSIONS}
    markdown = (
        f"**concat-cost (P8).** Parameters and FLOPs of the full-resolution decoder block "
        f"(fusion + two 3x3 conv-norm-ReLU) at widths C = {', '.join(map(str, block_widths))}. "
        f"{headline} The same holds for FLOPs ({flop_saving:.0%} saved by the 1x1 reduction at "
        f"C = {c}). For a whole 4-level U-Net with widths {list(model_widths)}, concat adds "
        f"{tot['concat']:+.0%} parameters over no skips and concat_1x1 {tot['concat_1x1']:+.0%}; "
        f"add costs nothing ({tot['add']:+.0%}, its norm only). Under one training budget "
        f"({steps} steps, {n_train} synthetic {size}x{size} images, widths {list(widths)}) "
        f"the skip variants lie within {spread:.3f} Dice of each other and "
        f"{min_gap:+.3f} to {max_gap:+.3f} from the plain encoder-decoder (none); one seed, so "
        f"differences of a few hundredths are within run-to-run noise.\n"
    )
    fig, axes = new_figure(3, width=4.6)
    ax = axes[0]
    for i, f in enumerate(FUSIONS):
        ax.plot(block_widths, [blocks[f][w]["params"] for w in block_widths], f"C{i}-o", label=f)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("decoder block width C")
    ax.set_ylabel("parameters of the decoder block")
    ax.set_title(f"Concat: {ratio['concat'] - 1:+.0%} parameters; 1x1 saves {saving:.0%}")
    ax.legend()
    ax = axes[1]
    xs = range(len(FUSIONS))
    ax.bar(xs, [totals[f]["flops"] / 1e9 for f in FUSIONS], color=[f"C{i}" for i in xs])
    ax.set_xticks(list(xs), FUSIONS)
    ax.set_ylabel("forward GFLOPs, 256x256 input")
    ax.set_title(f"Whole U-Net, widths {list(model_widths)}")
    ax = axes[2]
    for i, f in enumerate(FUSIONS):
        ax.plot(training[f]["losses"], f"C{i}-", alpha=0.8, label=f"{f}: val Dice {dices[f]:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy")
    ax.set_title("Same budget: Dice per fusion")
    ax.legend()
    return ExperimentResult(NAME, PRINCIPLES, headline, numbers, markdown, fig)
