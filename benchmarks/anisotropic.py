"""A 3D anisotropic U-Net against the 2D U-Net on serial sections, on the same time budget.

``../shared/data/drosophila-vnc-sstem`` holds 16 contiguous serial-section TEM sections
(1024 x 1024 px of 4.6 nm, sections about 50 nm thick: z is ~11x coarser), labelled with five
classes (intracellular, membrane, glia/extracellular, mitochondria, synapse). Both models see
the same pixels: the **left 3/4 of every section** (columns 0..767 of the in-plane crop) for
training and validation, and both are scored on the **right 1/4 of every section** (the same
held-out region, all 16 sections):

* **2D**: ``unetkit train`` on the 16 left parts as 2D images (its own seeded split: 13 train,
  3 validation sections);
* **3D**: ``unetkit train`` on the left parts as two 16-section volumes, columns 0..575
  (train) and 576..767 (validation), with ``dataset.yaml`` declaring ``spacing: [50, 4.6,
  4.6]`` and ``modality: EM``: the recipe's fingerprint then chooses per-axis strides and
  kernels (z is not pooled), the patch shape and the normalisation, and prints why.

Both get ``--max-minutes`` (default 8) and nothing else. The held-out region is predicted (2D:
one section at a time; 3D: the 16-section volume at once) and scored by Dice per class against
the labels, summed over the whole region. Run from the repository root::

    PYTHONPATH=src python benchmarks/anisotropic.py [--minutes 8] [--crop 1024] [--out DIR]

``--crop``: every section is centre-cropped in-plane first (default the whole 1024 x 1024).
``--only 2d`` or ``--only 3d`` runs one of the two (``results.json`` keeps the other's last
numbers when it exists).

The machine may be shared with other jobs: times and the steps a budget buys are conservative.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path("../shared/data/drosophila-vnc-sstem")
SECTIONS = range(0, 16)
CLASSES = ("intracellular", "membrane", "glia/extracellular", "mitochondria", "synapse")


#: In-plane centre crop (pixels) of every section; the full 1024 x 1024 is ``--crop 1024``.
CROP = [1024]


def _sections(kind: str) -> np.ndarray:
    """``(16, H, W)``: all sections, centre-cropped in-plane to ``CROP[0]``."""
    from unetkit.io import read_image, read_mask

    read = read_image if kind == "images" else read_mask
    arrays = [read(DATA / kind / f"{i:02d}.png") for i in SECTIONS]
    vol = np.stack([a[0] if kind == "images" else a for a in arrays])
    lo = (vol.shape[1] - CROP[0]) // 2
    return vol[:, lo : lo + CROP[0], lo : lo + CROP[0]]


def regions() -> tuple[slice, slice, slice]:
    """Columns of the crop: (training, 3D validation, held-out test) = left 9/16, next
    3/16, right 1/4; 2D trains and validates on the first two together."""
    w = CROP[0]
    return slice(0, w * 9 // 16), slice(w * 9 // 16, w * 3 // 4), slice(w * 3 // 4, w)


def make_2d(root: Path) -> Path:
    import tifffile

    train, val, _ = regions()
    left = slice(train.start, val.stop)
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        vol = _sections(kind)
        for i in SECTIONS:
            tifffile.imwrite(root / kind / f"{i:02d}.tif", vol[i][:, left].astype(np.uint8))
    return root


def make_3d(root: Path) -> Path:
    """Two 16-section volumes named so that the run's seeded split validates on the second."""
    import tifffile

    from unetkit.train.loader import split_indices

    _, val = split_indices(2, 0.2, 0)  # the default data.val_fraction and data.split_seed
    names = ("a", "b") if val == [1] else ("b", "a")  # (train volume, validation volume)
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        vol = _sections(kind)
        for name, cols in zip(names, regions()[:2], strict=True):
            tifffile.imwrite(root / kind / f"{name}.tif", vol[:, :, cols].astype(np.uint8))
    (root / "dataset.yaml").write_text("modality: EM\nspacing: [50, 4.6, 4.6]\n")
    return root


def train(data: Path, run: Path, minutes: float) -> tuple[float, str]:
    cmd = [
        sys.executable, "-m", "unetkit", "train", "--data", str(data), "--out", str(run),
        "--max-minutes", str(minutes), "--overwrite",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise SystemExit(f"training failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def dice_per_class(pred: np.ndarray, truth: np.ndarray) -> list[float | None]:
    out: list[float | None] = []
    for k in range(len(CLASSES)):
        p, t = pred == k, truth == k
        denom = int(p.sum() + t.sum())
        out.append(None if denom == 0 else 2.0 * int((p & t).sum()) / denom)
    return out


def evaluate(run: Path, three_d: bool) -> tuple[list[float | None], float]:
    from unetkit.infer import predict

    test = regions()[2]
    images, truth = _sections("images")[:, :, test], _sections("masks")[:, :, test]
    start = time.perf_counter()
    if three_d:
        pred = predict(run, images[None])
    else:
        pred = np.stack([predict(run, im[None]) for im in images])
    return dice_per_class(pred, truth), time.perf_counter() - start


def step_times(repeats: int = 2) -> None:
    """Seconds per training step (forward, backward, AdamW; 1 thread, widths 16..128, 5
    classes) of the 2D recipe's step and the old and new anisotropic 3D plans, in one process."""
    import torch

    from unetkit.model import UNet, UNetConfig

    torch.set_num_threads(1)
    widths = (16, 32, 64, 128)
    aniso = dict(strides=((1, 2, 2),) * 3, kernel_sizes=((1, 3, 3),) * 3 + ((3, 3, 3),))
    cases = {
        "2D, 8 x 128^2": (UNetConfig(spatial_dims=2, widths=widths), (8, 1, 128, 128)),
        "3D old plan, 2 x 10 x 104 x 104": (
            UNetConfig(spatial_dims=3, widths=widths, **aniso),  # type: ignore[arg-type]
            (2, 1, 10, 104, 104),
        ),
        "3D new plan, 2 x 8 x 88 x 88": (
            UNetConfig(spatial_dims=3, widths=widths, **aniso),  # type: ignore[arg-type]
            (2, 1, 8, 88, 88),
        ),
    }
    first = None
    for name, (config, shape) in cases.items():
        config = UNetConfig(**{**config.__dict__, "out_channels": 5, "norm": "batch"})
        model = UNet(config)
        opt = torch.optim.AdamW(model.parameters())
        x = torch.randn(shape)
        y = torch.randint(0, 5, (shape[0], *shape[2:]))
        for i in range(repeats + 1):
            if i == 1:
                start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = (time.perf_counter() - start) / repeats
        first = first or seconds
        print(f"{name}: {seconds:.2f} s/step ({seconds / first:.2f}x the 2D step)")


def _steps(run: Path) -> int:
    """Optimiser steps the run took (the last row of its ``metrics.csv``)."""
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    return int(rows[-1].split(",")[1]) if len(rows) > 1 else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=Path("bench-aniso"))
    ap.add_argument("--crop", type=int, default=1024, help="in-plane centre crop (pixels)")
    ap.add_argument("--only", choices=("2d", "3d"), help="run one of the two")
    ap.add_argument("--step-times", action="store_true", help="only time one step of each plan")
    args = ap.parse_args()
    if args.step_times:
        step_times()
        return
    CROP[0] = args.crop
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: not found; run from the repository root")
    out: Path = args.out
    saved = out / "results.json"
    results: dict[str, object] = json.loads(saved.read_text()) if saved.is_file() else {}
    results.update({"minutes": args.minutes, "crop": args.crop})
    for name, make, three_d in (("3d", make_3d, True), ("2d", make_2d, False)):
        if args.only and name != args.only:
            continue
        data = make(out / f"data-{name}")
        seconds, log = train(data, out / f"run-{name}", args.minutes)
        (out / f"train-{name}.log").write_text(log)
        recipe = [
            ln
            for ln in log.splitlines()
            if ln.startswith(("recipe:", "fingerprint:", "measured", "threads:", "precision"))
        ]
        dice, predict_s = evaluate(out / f"run-{name}", three_d)
        fg = [d for d in dice[1:] if d is not None]
        results[name] = {
            "train_wall_s": round(seconds, 1),
            "steps": _steps(out / f"run-{name}"),
            "predict_s": round(predict_s, 1),
            "dice": dict(zip(CLASSES, dice, strict=True)),
            "mean_dice_foreground": float(np.mean(fg)) if fg else None,
            "mean_dice_all": float(np.mean([d for d in dice if d is not None])),
            "recipe": recipe,
        }
        print(
            f"--- {name}: trained {seconds:.0f} s (budget {args.minutes} min), "
            f"{results[name]['steps']} steps"
        )  # type: ignore[index]
        for line in recipe:
            print("   ", line)
        for cls, d in zip(CLASSES, dice, strict=True):
            print(f"    dice {cls:20s} {'-' if d is None else f'{d:.3f}'}")
        print(f"    mean dice (4 foreground classes) {results[name]['mean_dice_foreground']:.3f}")
        saved.write_text(json.dumps(results, indent=2))
    if "2d" in results and "3d" in results:
        a, b = results["2d"], results["3d"]
        print(
            f"3D anisotropic / 2D mean foreground Dice on the held-out right quarter of all 16 "
            f"sections: {b['mean_dice_foreground']:.3f} / {a['mean_dice_foreground']:.3f}"  # type: ignore[index]
        )


if __name__ == "__main__":
    main()
