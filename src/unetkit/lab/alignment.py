"""P6 and P7, alignment: valid-mode size arithmetic, and no one-pixel shift in same mode.

**Valid mode (P6).** For several depths, the valid input sizes (each unpadded 3x3 convolution
removes 2 pixels, every pooled map must be even) and the output size of each, checked against
a real forward pass of the network on PyTorch's meta device.

**Same mode (P7).** Where the coarse, upsampled branch lands relative to the input. We build a
1D U-Net with ``fusion="none"`` whose weights make it a pure geometric probe: every 3x3
convolution is the identity (a centred delta), the max-pool keeps a point, the 2x2 transposed
convolution copies each value to both children, so a point at ``p`` comes back as the box of
input positions that share ``p``'s cell at the bottleneck. The reconstructed point is the
box's centroid. The *reference* runs the same network on the point placed in a canvas whose
length is a multiple of ``2 ** (depth - 1)`` (no size problem anywhere). unetkit, on the
odd-sized input itself, must agree with the reference exactly; a *naive* implementation that
lets pooling floor odd sizes and then resizes the upsampled map to the skip's size (nearest
interpolation, the common quick fix) moves the point.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.lab.common import ExperimentResult, LabSettings, new_figure
from unetkit.model import UNet, UNetConfig, preset_config
from unetkit.model import sizes as size_math

NAME = "alignment"
PRINCIPLES = ("P6", "P7")


def valid_table(depths: tuple[int, ...], count: int = 5) -> list[dict[str, Any]]:
    """The first ``count`` valid input sizes per depth, their outputs, checked by a forward pass."""
    rows = []
    for depth in depths:
        config = UNetConfig(
            spatial_dims=1, widths=tuple(2 for _ in range(depth)), padding="valid", norm="none"
        )
        with torch.device("meta"):
            model = UNet(config)
        valid = size_math.valid_input_sizes(config, 1, 4096)[:count]
        outputs, verified = [], True
        for n in valid:
            predicted = size_math.output_size(config, n)[0]
            actual = model(torch.empty(1, 1, n, device="meta")).shape[-1]
            outputs.append(predicted)
            verified &= predicted == actual
        rows.append(
            {
                "depth": depth,
                "valid_inputs": valid,
                "outputs": outputs,
                "step": valid[1] - valid[0] if len(valid) > 1 else None,
                "border_lost": [n - o for n, o in zip(valid, outputs, strict=True)],
                "verified_by_forward_pass": verified,
            }
        )
    return rows


#: The anisotropic model the valid-mode check also covers: a volume whose first axis is coarse,
#: not pooled (and convolved in-plane only) at the first level.
ANISOTROPIC = {"strides": ((1, 2, 2), (2, 2, 2)), "kernel_sizes": ((1, 3, 3), (3, 3, 3), (3, 3, 3))}


def anisotropic_table(count: int = 4) -> dict[str, Any]:
    """Per-axis valid input sizes of an anisotropic 3D valid-mode U-Net, each combination of
    the first ``count`` sizes per axis checked against a forward pass on the meta device."""
    config = UNetConfig(
        spatial_dims=3, widths=(2, 2, 2), padding="valid", norm="none", **ANISOTROPIC
    )
    with torch.device("meta"):
        model = UNet(config)
    per_axis = [size_math.valid_input_sizes(config, 1, 512, a)[:count] for a in range(3)]
    verified = True
    for k in range(count):
        shape = tuple(sizes[k] for sizes in per_axis)
        predicted = size_math.output_size(config, shape)
        actual = tuple(model(torch.empty(1, 1, *shape, device="meta")).shape[2:])
        verified &= predicted == actual
    outputs = [
        [size_math.output_size(config, tuple(s[k] for s in per_axis))[a] for k in range(count)]
        for a in range(3)
    ]
    return {
        **{k: [list(r) for r in v] for k, v in ANISOTROPIC.items()},
        "valid_inputs_per_axis": per_axis,
        "outputs_per_axis": outputs,
        "verified_by_forward_pass": verified,
    }


@torch.no_grad()
def probe_model(depth: int) -> UNet:
    """A 1D ``fusion="none"`` U-Net whose weights make it a geometric probe (see module doc)."""
    model = UNet(
        UNetConfig(
            spatial_dims=1,
            in_channels=1,
            out_channels=1,
            widths=(1,) * depth,
            convs_per_block=1,
            fusion="none",
            norm="none",
            act="relu",
            up="transpose",
            down="maxpool",
        )
    )
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose1d):
            m.weight.fill_(1.0)
        elif isinstance(m, nn.Conv1d):
            m.weight.zero_()
            m.weight[:, :, m.weight.shape[-1] // 2] = 1.0
        if isinstance(m, nn.modules.conv._ConvNd) and m.bias is not None:
            m.bias.zero_()
    return model.eval()


@torch.no_grad()
def naive_forward(model: UNet, x: Tensor) -> Tensor:
    """The model's layers run the naive way: no padding, pooling floors odd sizes, and each
    upsampled map is resized to its skip's size by nearest interpolation.

    ``x: (B, C, *S) -> (B, out_channels, *S)``.
    """
    skips = model.encoder(x)  # floors at every odd size
    h = skips[-1]
    for i in reversed(range(len(model.decoder.ups))):
        up = model.decoder.ups[i](h)
        if up.shape[2:] != skips[i].shape[2:]:
            up = F.interpolate(up, size=skips[i].shape[2:], mode="nearest")
        h = model.decoder.blocks[i](model.decoder.fuses[i](up, skips[i]))
    return model.head(h)


def _centroid(y: Tensor) -> float:
    w = y.clamp_min(0).double()
    return float((w * torch.arange(len(w), dtype=torch.float64)).sum() / w.sum())


@torch.no_grad()
def point_shifts(depth: int, length: int) -> dict[str, Any]:
    """Signed shift of the reconstructed point, unetkit and naive, for every interior position."""
    model = probe_model(depth)
    cell = 2 ** (depth - 1)
    canvas = -(-length // cell) * cell + cell
    ours, naive = [], []
    for p in range(cell, length - cell):  # away from the borders
        x = torch.zeros(1, 1, length)
        x[0, 0, p] = 1.0
        big = torch.zeros(1, 1, canvas)
        big[0, 0, p] = 1.0
        reference = _centroid(model(big)[0, 0, :length])
        ours.append(_centroid(model(x)[0, 0]) - reference)
        naive.append(_centroid(naive_forward(model, x)[0, 0]) - reference)
    return {
        "depth": depth,
        "length": length,
        "positions": len(ours),
        "unetkit_max_abs_shift": max(abs(s) for s in ours),
        "naive_mean_shift": sum(naive) / len(naive),
        "naive_max_abs_shift": max(abs(s) for s in naive),
        "naive_shifts": naive,
    }


def run(settings: LabSettings) -> ExperimentResult:
    """Tabulate valid sizes; measure the point shift of unetkit and of the naive way."""
    if settings.quick:
        depths, cases = (2, 3, 4), [(2, 33), (3, 37), (4, 45)]
    else:
        depths = (2, 3, 4, 5, 6)
        cases = [(d, n) for d in (2, 3, 4, 5) for n in (33, 35, 37, 63, 65, 97, 99)]
    table = valid_table(depths)
    paper = preset_config("unet2d_ronneberger2015")
    paper_out = size_math.output_size(paper, 572)
    shifts = [point_shifts(d, n) for d, n in cases]
    ours_max = max(s["unetkit_max_abs_shift"] for s in shifts)
    naive_mean = sum(abs(s["naive_mean_shift"]) for s in shifts) / len(shifts)
    naive_max = max(s["naive_max_abs_shift"] for s in shifts)
    aniso = anisotropic_table()
    all_verified = all(r["verified_by_forward_pass"] for r in table)
    all_verified &= aniso["verified_by_forward_pass"]
    headline = (
        f"On odd-sized inputs unetkit's same mode reconstructs a point exactly where it was "
        f"(largest shift {ours_max:.2g} px); resizing the upsampled map to the skip (naive) "
        f"shifts it by {naive_mean:.2f} px on average, up to {naive_max:.2f} px."
    )
    numbers = {
        "valid_mode": table,
        "valid_table_verified": all_verified,
        "anisotropic_valid_mode": aniso,
        "ronneberger2015_572_to": list(paper_out),
        "same_mode": shifts,
        "unetkit_max_abs_shift": ours_max,
        "naive_mean_abs_shift": naive_mean,
        "naive_max_abs_shift": naive_max,
    }
    table_md = "\n".join(
        [
            "| depth | first valid input sizes | their outputs | step |",
            "|---|---|---|---|",
            *(
                f"| {r['depth']} | {', '.join(map(str, r['valid_inputs']))} | "
                f"{', '.join(map(str, r['outputs']))} | {r['step']} |"
                for r in table
            ),
        ]
    )
    markdown = (
        f"**alignment (P6, P7).** Valid mode (3x3 convolutions, two per block): the smallest "
        f"valid input sizes per depth and their output sizes, "
        f"{'all' if all_verified else 'NOT all'} confirmed by a forward pass of the real "
        f"network; the paper's 572x572 gives {paper_out[0]}x{paper_out[1]}. An anisotropic 3D "
        f"model (strides {aniso['strides']}, kernels {aniso['kernel_sizes']}) has its own valid "
        f"sizes per axis: {aniso['valid_inputs_per_axis'][0]} along the coarse axis, "
        f"{aniso['valid_inputs_per_axis'][1]} in-plane.\n\n{table_md}\n\n"
        f"Same mode: a 1D U-Net with identity weights as a geometric probe, on odd lengths "
        + ", ".join(f"{n} (depth {d})" for d, n in cases[:6])
        + ("..." if len(cases) > 6 else "")
        + f". {headline} unetkit pads the input at its far end to a multiple of "
        f"2^(depth-1) and crops the output back, so the coarse branch stays registered with "
        f"the skip. The naive resize moves the coarse map by one of *its* pixels at every level "
        f"where an odd size was floored, i.e. by 2^level input pixels, so the design source's "
        f"one-pixel misalignment is the best case: with several odd levels the shifts add up."
    )
    fig, axes = new_figure(2)
    ax = axes[0]
    for i, r in enumerate(table):
        ax.plot(r["valid_inputs"], r["outputs"], f"C{i}-o", label=f"depth {r['depth']}")
    ax.set_xlabel("valid input size (px)")
    ax.set_ylabel("output size (px)")
    ax.set_title(f"Valid mode: sizes step by 2^(depth-1); 572 -> {paper_out[0]}")
    ax.legend()
    ax = axes[1]
    demo = shifts[0]
    model = probe_model(demo["depth"])
    p = demo["length"] // 2
    x = torch.zeros(1, 1, demo["length"])
    x[0, 0, p] = 1.0
    with torch.no_grad():
        ax.stem(x[0, 0].numpy(), linefmt="k-", markerfmt="ko", basefmt=" ", label="input point")
        ax.step(
            range(demo["length"]), model(x)[0, 0].numpy(), "C0-", where="mid", lw=2, label="unetkit"
        )
        ax.step(
            range(demo["length"]),
            naive_forward(model, x)[0, 0].numpy(),
            "C3--",
            where="mid",
            label="naive (resize up to skip)",
        )
    ax.set_xlim(p - 6, p + 6)
    ax.set_xlabel(f"position (px), input length {demo['length']}")
    ax.set_ylabel("coarse-branch response")
    ax.set_title(f"Same mode, odd size: naive shifts by {abs(demo['naive_mean_shift']):.0f} px")
    ax.legend()
    return ExperimentResult(NAME, PRINCIPLES, headline, numbers, markdown, fig)
