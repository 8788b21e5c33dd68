"""The paper's hardest case: touching objects of one class, and what keeps them apart.

Synthetic images of round cells, most of them in touching pairs (centres ``r1 + r2`` apart),
each cell bright in its middle and darker towards its rim, so a contact is a faint valley of
intensity, with noise. The class mask is drawn as in the 2015 paper: objects, with a one-pixel
line of background where two of them touch. Three small U-Nets get the same images, steps and
optimiser:

* ``ce``: plain cross-entropy on the class mask;
* ``weighted``: cross-entropy weighted by the paper's border weight map (``w0 = 10``,
  ``sigma = 5``, :func:`unetkit.train.border_weight_map`), which weighs the thin separating
  lines most;
* ``boundary``: the three-class boundary target (background / interior / touching border,
  :func:`unetkit.instances.boundary_target`) with the border weight map on the interiors, read
  out by seeds + watershed (:func:`unetkit.instances.instances_from_probabilities`).

On held-out images, a touching pair is **separated** when each of its two cells has a
predicted object covering most of it and the two objects differ; the first two models'
objects are the connected components of their class maps. Reported: the fraction of touching
pairs separated, and the DSB 2018 score of the objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from unetkit.instances import (
    INTERIOR,
    border_pixels,
    boundary_target,
    instances_from_class_map,
    instances_from_probabilities,
)
from unetkit.lab.common import ExperimentResult, LabSettings, new_figure, seed_everything
from unetkit.metrics import aggregate_instance_scores, instance_scores
from unetkit.model import UNet, UNetConfig
from unetkit.train.weight_map import border_weight_map

NAME = "touching"
PRINCIPLES = ("P1",)
VARIANTS = ("ce", "weighted", "boundary")


def touching_cells(
    size: int, pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """One image ``(size, size)`` float32, its instance ids int64 and the touching pairs.

    ``pairs`` pairs of touching discs (radii 4..8 px) at random places; a disc that would
    overlap an earlier one is not drawn. Intensity ``1 - 0.6 (d / r)^2`` inside a disc (a
    valley at each contact), times a per-cell brightness, plus Gaussian noise (sigma 0.08).
    """
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    inst = np.zeros((size, size), dtype=np.int64)
    image = np.zeros((size, size))
    discs: list[tuple[float, float, float]] = []
    touching: list[tuple[int, int]] = []
    for _ in range(pairs):
        for _attempt in range(20):
            r1, r2 = rng.uniform(4.0, 8.0, size=2)
            angle = rng.uniform(0, 2 * np.pi)
            cy, cx = rng.uniform(r1 + 1, size - r1 - 1, size=2)
            dy, dx = (r1 + r2) * np.sin(angle), (r1 + r2) * np.cos(angle)
            cy2, cx2 = cy + dy, cx + dx
            if not (r2 + 1 <= cy2 <= size - r2 - 1 and r2 + 1 <= cx2 <= size - r2 - 1):
                continue
            new = [(cy, cx, r1), (cy2, cx2, r2)]
            if all(np.hypot(a - c, b - d) > r + s + 2 for a, b, r in new for c, d, s in discs):
                break
        else:
            continue
        ids = []
        for cy_, cx_, r in new:
            discs.append((cy_, cx_, r))
            k = len(discs)
            d2 = ((yy - cy_) ** 2 + (xx - cx_) ** 2) / r**2
            inside = (d2 <= 1.0) & (inst == 0)
            inst[inside] = k
            image[inside] = rng.uniform(0.7, 1.0) * (1.0 - 0.6 * d2[inside])
            ids.append(k)
        touching.append((ids[0], ids[1]))
    image += rng.normal(0.0, 0.08, size=image.shape)
    return image.astype(np.float32), inst, touching


def paper_mask(inst: np.ndarray) -> np.ndarray:
    """The class mask as the paper drew it: objects, with background where two touch."""
    return ((inst > 0) & ~border_pixels(inst, width=1)).astype(np.int64)


def separated_fraction(pred: np.ndarray, inst: np.ndarray, pairs: list[tuple[int, int]]) -> float:
    """Share of ``pairs`` whose two cells map to two different predicted objects.

    A cell maps to the predicted object covering most of its pixels, if that covers at least
    half of them (else it is lost and its pair counts as not separated).
    """
    if not pairs:
        return float("nan")

    def owner(k: int) -> int:
        ids, counts = np.unique(pred[inst == k], return_counts=True)
        best = int(np.argmax(counts))
        return int(ids[best]) if ids[best] != 0 and counts[best] * 2 >= counts.sum() else 0

    ok = [(a := owner(i)) != 0 and (b := owner(j)) != 0 and a != b for i, j in pairs]
    return float(np.mean(ok))


def _dataset(n: int, size: int, pairs: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    images, insts, touch = [], [], []
    for _ in range(n):
        im, inst, tp = touching_cells(size, pairs, rng)
        images.append(im)
        insts.append(inst)
        touch.append(tp)
    x = np.stack(images)[:, None]
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
    return {"x": torch.from_numpy(x), "inst": insts, "pairs": touch}


def _targets(insts: list[np.ndarray], variant: str) -> tuple[Tensor, Tensor]:
    if variant == "boundary":
        ys = [boundary_target(i, width=1) for i in insts]
        ws = [
            border_weight_map(np.where(y == INTERIOR, i, 0), from_components=False)
            for y, i in zip(ys, insts, strict=True)
        ]
    else:
        ys = [paper_mask(i) for i in insts]
        ws = [
            border_weight_map(y) if variant == "weighted" else np.ones(y.shape, np.float32)
            for y in ys
        ]
    return torch.from_numpy(np.stack(ys).astype(np.int64)), torch.from_numpy(np.stack(ws))


def _train(
    variant: str,
    train: dict[str, Any],
    steps: int,
    batch: int,
    seed: int,
    widths: tuple[int, ...] = (16, 32, 64),
) -> UNet:
    seed_everything(seed)
    out = 3 if variant == "boundary" else 2
    model = UNet(UNetConfig(spatial_dims=2, in_channels=1, out_channels=out, widths=widths))
    y, w = _targets(train["inst"], variant)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=gen)
        loss = (F.cross_entropy(model(train["x"][idx]), y[idx], reduction="none") * w[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model


@torch.no_grad()
def _objects(model: UNet, x: Tensor, variant: str) -> list[np.ndarray]:
    probs = torch.softmax(model(x), dim=1).numpy()
    if variant == "boundary":
        return [instances_from_probabilities(p) for p in probs]
    return [instances_from_class_map(p.argmax(0)) for p in probs]


def run(settings: LabSettings) -> ExperimentResult:
    """Train the three variants on the same data and count the touching pairs each separates."""
    size, pairs = 64, 4
    n_train, n_test, steps, batch = (12, 4, 25, 4) if settings.quick else (96, 32, 400, 8)
    widths = (8, 16, 32) if settings.quick else (16, 32, 64)
    train = _dataset(n_train, size, pairs, settings.seed)
    test = _dataset(n_test, size, pairs, settings.seed + 1000)
    n_pairs = sum(len(p) for p in test["pairs"])
    final: dict[str, dict[str, float]] = {}
    examples: dict[str, np.ndarray] = {}
    for variant in VARIANTS:
        model = _train(variant, train, steps, batch, settings.seed, widths)
        objects = _objects(model, test["x"], variant)
        fractions = [
            separated_fraction(o, i, p)
            for o, i, p in zip(objects, test["inst"], test["pairs"], strict=True)
            if p
        ]
        scores = [instance_scores(o, i) for o, i in zip(objects, test["inst"], strict=True)]
        agg = aggregate_instance_scores(scores)
        final[variant] = {
            "separated": float(np.average(fractions, weights=[len(p) for p in test["pairs"] if p])),
            "dsb": agg.dsb,
            "merges": agg.merges,
        }
        examples[variant] = objects[0]
    truth_cc = [instances_from_class_map(paper_mask(i)) for i in test["inst"]]
    ideal = float(
        np.mean(
            [
                separated_fraction(o, i, p)
                for o, i, p in zip(truth_cc, test["inst"], test["pairs"], strict=True)
                if p
            ]
        )
    )
    f = {v: final[v]["separated"] for v in VARIANTS}
    headline = (
        f"Touching pairs separated after {steps} steps: {f['ce']:.0%} with plain "
        f"cross-entropy, {f['weighted']:.0%} with the border weight map, {f['boundary']:.0%} "
        f"with the boundary target ({n_pairs} held-out pairs)."
    )
    numbers = {
        "image_size": size,
        "pairs_per_image": pairs,
        "train_images": n_train,
        "test_images": n_test,
        "test_pairs": n_pairs,
        "steps": steps,
        "batch": batch,
        "widths": list(widths),
        "final": final,
        "truth_mask_components_separated": ideal,
    }
    markdown = (
        f"**touching (P1).** Three small U-Nets (widths {'-'.join(map(str, widths))}) learned "
        f"{n_train} synthetic "
        f"{size} x {size} images of touching round cells (a faint intensity valley at each "
        f"contact) for {steps} Adam steps each. {headline} DSB 2018 scores: "
        + ", ".join(f"{v} {final[v]['dsb']:.3f}" for v in VARIANTS)
        + f". The paper's class masks keep a one-pixel background line between touching "
        f"cells (their connected components separate {ideal:.0%} of the pairs); the weight map "
        f"makes the network pay for that line, and the boundary target asks for the contact "
        f"zone explicitly and lets a watershed draw the line afterwards."
    )
    fig, axes = new_figure(4, width=3.6, height=3.6)
    axes[0].imshow(test["x"][0, 0].numpy(), cmap="gray")
    axes[0].set_title("held-out image")
    for ax, variant in zip(axes[1:], VARIANTS, strict=True):
        ax.imshow(examples[variant], cmap="nipy_spectral", interpolation="nearest")
        ax.set_title(f"{variant}: {f[variant]:.0%} of pairs separated", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(headline, fontsize=9)
    return ExperimentResult(NAME, PRINCIPLES, headline, numbers, markdown, fig)
