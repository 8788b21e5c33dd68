"""P4, the 1D spike: skips carry *where*; without them the spike squeezes through the bottleneck.

A 1D U-Net learns to reproduce signals that are zero except for one sharp spike (one sample of
random height at a random position). Two variants, ``fusion="concat"`` and ``fusion="none"``,
get the same data, steps and optimiser. At regular checkpoints we measure on held-out spikes the
position error of the output's peak, its full width at half maximum (FWHM, in samples, from the
linearly interpolated half-maximum crossings; an exact copy has FWHM 1) and its height relative
to the input spike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from unetkit.lab.common import ExperimentResult, LabSettings, new_figure, seed_everything
from unetkit.model import UNet, UNetConfig

NAME = "spike"
PRINCIPLES = ("P4",)
VARIANTS = ("concat", "none")


def spikes(n: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` signals ``(n, 1, length)``, zero but for one spike of height in [0.5, 1.5).

    Returns the signals and the spike positions ``(n,)`` (kept ``length // 8`` from the ends).
    """
    margin = length // 8
    pos = torch.randint(margin, length - margin, (n,), generator=generator)
    height = 0.5 + torch.rand(n, generator=generator)
    x = torch.zeros(n, 1, length)
    x[torch.arange(n), 0, pos] = height
    return x, pos


def fwhm(y: np.ndarray) -> float:
    """Full width at half maximum of the highest peak of ``y (L,)``, in samples.

    The half-maximum crossings on each side are linearly interpolated, so a single non-zero
    sample has width 1.0 and a wider or smeared peak more.
    """
    k = int(np.argmax(y))
    half = y[k] / 2.0
    if half <= 0:
        return float("nan")
    left = k
    while left > 0 and y[left - 1] > half:
        left -= 1
    right = k
    while right < len(y) - 1 and y[right + 1] > half:
        right += 1
    # Crossing left of `left`: between left-1 (<= half) and left (> half).
    lo = left - 0.5 if left == 0 else left - 1 + (half - y[left - 1]) / (y[left] - y[left - 1])
    hi = (
        right + 0.5
        if right == len(y) - 1
        else right + (y[right] - half) / (y[right] - y[right + 1])
    )
    return float(hi - lo)


@torch.no_grad()
def measure(model: UNet, x: Tensor, pos: Tensor) -> dict[str, float]:
    """Peak position error, FWHM and relative peak height of ``model`` on spikes ``x``."""
    model.eval()
    y = model(x)[:, 0].numpy()  # (N, L)
    model.train()
    peak = y.argmax(axis=1)
    height = x[:, 0].max(dim=1).values.numpy()
    return {
        "position_error": float(np.mean(np.abs(peak - pos.numpy()))),
        "fwhm": float(np.nanmean([fwhm(row) for row in y])),
        "peak_ratio": float(np.mean(y.max(axis=1) / height)),
    }


def run(settings: LabSettings) -> ExperimentResult:
    """Train both variants under one budget and measure how sharply each reproduces spikes."""
    length = 128
    widths = (8, 16, 32, 64, 64)
    steps, every, batch = (120, 40, 16) if settings.quick else (480, 40, 16)
    test_x, test_pos = spikes(128, length, torch.Generator().manual_seed(settings.seed + 1000))
    curves: dict[str, list[dict[str, float]]] = {}
    examples: dict[str, np.ndarray] = {}
    for fusion in VARIANTS:
        seed_everything(settings.seed)
        config = UNetConfig(
            spatial_dims=1,
            in_channels=1,
            out_channels=1,
            widths=widths,
            fusion=fusion,
            norm="none",
            up="interp",
        )
        model = UNet(config)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(settings.seed)
        curves[fusion] = []
        for step in range(1, steps + 1):
            x, _ = spikes(batch, length, gen)
            opt.zero_grad(set_to_none=True)
            # Squared error summed over the signal, averaged over the batch.
            loss = (model(x) - x).square().sum(dim=-1).mean()
            loss.backward()
            opt.step()
            if step % every == 0:
                curves[fusion].append(
                    {"step": step, "loss": float(loss.detach()), **measure(model, test_x, test_pos)}
                )
        with torch.no_grad():
            model.eval()
            examples[fusion] = model(test_x[:1])[0, 0].numpy()

    final = {f: curves[f][-1] for f in VARIANTS}
    c, n = final["concat"], final["none"]
    headline = (
        f"After {steps} steps the spike comes back with FWHM {c['fwhm']:.2f} samples and "
        f"{c['peak_ratio']:.0%} of its height with skips, {n['fwhm']:.2f} samples and "
        f"{n['peak_ratio']:.0%} without."
    )
    sharp = {
        f: next((p["step"] for p in curves[f] if p["fwhm"] < 1.1 and p["peak_ratio"] > 0.9), None)
        for f in VARIANTS
    }
    numbers = {
        "signal_length": length,
        "widths": list(widths),
        "up": "interp",
        "norm": "none",
        "steps": steps,
        "batch": batch,
        "final": final,
        "curves": curves,
        "first_sharp_step": sharp,
        "sharp_criterion": "FWHM < 1.1 samples and peak height > 90% of the input spike",
    }

    def when(f: str) -> str:
        return f"from step {sharp[f]}" if sharp[f] is not None else f"not within {steps} steps"

    markdown = (
        f"**spike (P4).** A 1D U-Net (widths {list(widths)}, linear upsampling, no "
        f"normalisation) learned to copy signals of length {length} that are zero but for one "
        f"spike, with and without skips, under the same budget ({steps} Adam steps, batch "
        f"{batch}). {headline} Mean peak position error: {c['position_error']:.2f} vs "
        f"{n['position_error']:.2f} samples. The skip network is sharp (FWHM < 1.1, height > 90%) "
        f"{when('concat')}; the network without skips {when('none')}. Where the "
        f"design source says the spike is recovered sharply *only* with skips, we find that it "
        f"is recovered much *sooner* with skips: the plain encoder-decoder can learn to encode "
        f"the spike's position inside a {2 ** (len(widths) - 1)}-sample cell in its "
        f"{widths[-1]} bottleneck channels, given enough steps (see the curves)."
    )
    fig, axes = new_figure(2)
    ax = axes[0]
    ax.plot(test_x[0, 0].numpy(), "k-", lw=2.5, alpha=0.4, label="input spike")
    ax.plot(examples["concat"], "C0-", label="with skips (concat)")
    ax.plot(examples["none"], "C3--", label="without skips (none)")
    p0 = int(test_pos[0])
    ax.set_xlim(p0 - 16, p0 + 16)
    ax.set_xlabel("position (samples)")
    ax.set_ylabel("amplitude")
    ax.set_title(f"Held-out spike after {steps} steps")
    ax.legend()
    ax = axes[1]
    for f, style in (("concat", "C0-o"), ("none", "C3--s")):
        ax.plot(
            [p["step"] for p in curves[f]],
            [p["fwhm"] for p in curves[f]],
            style,
            label=f"FWHM, {f}",
        )
    ax.axhline(1.0, color="k", lw=0.8, ls=":", label="exact copy (FWHM 1)")
    ax.set_xlabel("training step")
    ax.set_ylabel("FWHM of the output peak (samples)")
    ax.set_title("Skips localise the spike sooner")
    ax.legend()
    fig.suptitle(headline, fontsize=9)
    return ExperimentResult(NAME, PRINCIPLES, headline, numbers, markdown, fig)
