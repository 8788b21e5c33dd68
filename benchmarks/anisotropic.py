"""A 3D anisotropic U-Net against the 2D U-Net on serial sections, on the same time budget.

``../shared/data/drosophila-vnc-sstem`` holds 16 contiguous serial-section TEM sections
(1024 x 1024 px of 4.6 nm, sections about 50 nm thick: z is ~11x coarser), labelled with five
classes (intracellular, membrane, glia/extracellular, mitochondria, synapse). Sections 12..15
are held out as the test volume; both models see only sections 0..11:

* **2D**: ``unetkit train`` on the 12 sections as 2D images (its own seeded 10/2 split);
* **3D**: ``unetkit train`` on the same sections as two volumes, 0..9 (train) and 10..11
  (validation), with ``dataset.yaml`` declaring ``spacing: [50, 4.6, 4.6]`` and
  ``modality: EM``: the recipe's fingerprint then chooses per-axis strides and kernels (z is not
  pooled), the patch shape and the normalisation, and prints why.

Both get ``--max-minutes`` (default 4) and nothing else. The test sections are predicted (2D:
one section at a time; 3D: the 4-section volume at once) and scored by Dice per class against
the labels. Run from the repository root::

    PYTHONPATH=src python benchmarks/anisotropic.py [--minutes 4] [--crop 512] [--out DIR]

``--crop``: every section is centre-cropped in-plane (default 512 x 512 of the 1024 x 1024, so
that both runs fit a small shared CPU machine; the whole sections are ``--crop 1024``).

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
TRAIN, VAL, TEST = range(0, 10), range(10, 12), range(12, 16)
CLASSES = ("intracellular", "membrane", "glia/extracellular", "mitochondria", "synapse")


#: In-plane centre crop (pixels) of every section; the full 1024 x 1024 is ``--crop 1024``.
CROP = [512]


def _sections(kind: str, indices: range) -> np.ndarray:
    """``(D, H, W)`` sections ``indices``, centre-cropped in-plane to ``CROP[0]``."""
    from unetkit.io import read_image, read_mask

    read = read_image if kind == "images" else read_mask
    arrays = [read(DATA / kind / f"{i:02d}.png") for i in indices]
    vol = np.stack([a[0] if kind == "images" else a for a in arrays])
    lo = (vol.shape[1] - CROP[0]) // 2
    return vol[:, lo : lo + CROP[0], lo : lo + CROP[0]]


def make_2d(root: Path) -> Path:
    import tifffile

    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in [*TRAIN, *VAL]:
            section = _sections(kind, range(i, i + 1))[0]
            tifffile.imwrite(root / kind / f"{i:02d}.tif", section.astype(np.uint8))
    return root


def make_3d(root: Path) -> Path:
    """Two volumes named so that the run's seeded split validates on sections 10..11."""
    import tifffile

    from unetkit.train.loader import split_indices

    _, val = split_indices(2, 0.2, 0)  # the default data.val_fraction and data.split_seed
    names = ("a", "b") if val == [1] else ("b", "a")  # (train volume, validation volume)
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for name, part in zip(names, (TRAIN, VAL), strict=True):
            vol = _sections(kind, part)
            tifffile.imwrite(root / kind / f"{name}.tif", vol.astype(np.uint8))
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

    images, truth = _sections("images", TEST), _sections("masks", TEST)
    start = time.perf_counter()
    if three_d:
        pred = predict(run, images[None])
    else:
        pred = np.stack([predict(run, im[None]) for im in images])
    return dice_per_class(pred, truth), time.perf_counter() - start


def _steps(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "step" in ln.lower()]
    return lines[-1].strip()[:160] if lines else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=Path("bench-aniso"))
    ap.add_argument("--crop", type=int, default=512, help="in-plane centre crop (pixels)")
    args = ap.parse_args()
    CROP[0] = args.crop
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: not found; run from the repository root")
    out: Path = args.out
    results: dict[str, object] = {"minutes": args.minutes}
    for name, make, three_d in (("3d", make_3d, True), ("2d", make_2d, False)):
        data = make(out / f"data-{name}")
        seconds, log = train(data, out / f"run-{name}", args.minutes)
        recipe = [ln for ln in log.splitlines() if ln.startswith(("recipe:", "fingerprint:"))]
        dice, predict_s = evaluate(out / f"run-{name}", three_d)
        fg = [d for d in dice[1:] if d is not None]
        results[name] = {
            "train_wall_s": round(seconds, 1),
            "predict_s": round(predict_s, 1),
            "dice": dict(zip(CLASSES, dice, strict=True)),
            "mean_dice_foreground": float(np.mean(fg)) if fg else None,
            "mean_dice_all": float(np.mean([d for d in dice if d is not None])),
            "recipe": recipe,
            "last_progress": _steps(log),
        }
        print(f"--- {name}: trained {seconds:.0f} s (budget {args.minutes} min)")
        for line in recipe:
            print("   ", line)
        for cls, d in zip(CLASSES, dice, strict=True):
            print(f"    dice {cls:20s} {'-' if d is None else f'{d:.3f}'}")
        print(f"    mean dice (4 foreground classes) {results[name]['mean_dice_foreground']:.3f}")
    a, b = results["2d"], results["3d"]
    print(
        f"3D anisotropic / 2D mean foreground Dice on held-out sections 12..15: "
        f"{b['mean_dice_foreground']:.3f} / {a['mean_dice_foreground']:.3f}"  # type: ignore[index]
    )
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
