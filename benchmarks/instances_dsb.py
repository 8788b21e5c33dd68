"""The judged number: DSB 2018 score of ``unetkit train --data DIR`` + ``predict --instances``.

1. Split ``../shared/data/dsb2018-nuclei`` into a training part and a held-out fifth (seeded,
   by image; the held-out images are never trained on, nor used to tune anything). The parts
   are folders of symlinks under ``--work``.
2. ``unetkit train --data <train part> --max-minutes M --out <work>/run`` (nothing else; the
   recipe sees ``instances/`` and trains on the boundary target, then tunes the
   post-processing on its own validation images).
3. On the held-out images, mean DSB 2018 score (and F1@0.5, PQ, merges) of:
   (a) ``unetkit predict --instances`` (the CLI, so the whole path is measured);
   (b) connected components of the same model's plain class map (``unetkit predict``);
   (c) connected components of the ground-truth class masks (``masks/``);
   (d) an oracle: (a)'s foreground pixels, each given the id of the nearest true object (the
       truth's separation, the model's pixels): what perfect separation alone would reach, so
       (c) - (d) is what the pixels themselves, not the separation, leave to gain.

    PYTHONPATH=src python benchmarks/instances_dsb.py --minutes 10 --work /tmp/inst_dsb

``--skip-train`` reuses ``<work>/run``; ``--set key=value ...`` adds config overrides to the
training run (to compare a setting on the same split). Results are printed and written to
``<work>/results.json``. Numbers are in ``benchmarks/README.md``.
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
from scipy import ndimage

from unetkit.instances import instances_from_class_map
from unetkit.io.images import read_mask
from unetkit.metrics import aggregate_instance_scores, instance_scores

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018-nuclei"


def split(data: Path, work: Path, fraction: float, seed: int) -> tuple[Path, Path, list[str]]:
    """Symlink folders ``train/`` and ``heldout/`` under ``work``; returns them and the
    held-out stems."""
    stems = sorted(p.stem for p in (data / "images").iterdir() if not p.name.startswith("."))
    order = np.random.default_rng(seed).permutation(len(stems))
    n_test = max(1, round(fraction * len(stems)))
    test = sorted(stems[i] for i in order[:n_test])
    parts = {"train": sorted(set(stems) - set(test)), "heldout": test}
    for name, members in parts.items():
        for sub in ("images", "masks", "instances"):
            folder = work / name / sub
            folder.mkdir(parents=True, exist_ok=True)
            for src in (data / sub).iterdir():
                if src.stem in members and not (folder / src.name).exists():
                    os.symlink(src.resolve(), folder / src.name)
    return work / "train", work / "heldout", test


def truth_separated(foreground: np.ndarray, truth: np.ndarray, reach: float = 3.0) -> np.ndarray:
    """``foreground`` (bool) labelled by the nearest true object within ``reach`` pixels;
    pieces farther from every true object become objects of their own."""
    distance, index = ndimage.distance_transform_edt(truth == 0, return_indices=True)
    near = foreground & (distance <= reach)
    out = np.where(near, truth[tuple(index)], 0).astype(np.int64)
    far, _ = ndimage.label(foreground & ~near)
    return np.where(far > 0, far + int(truth.max()), out)


def unetkit(*args: str) -> None:
    cmd = [sys.executable, "-m", "unetkit", *args]
    print("$ unetkit " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def score(name: str, preds: dict[str, np.ndarray], truths: dict[str, np.ndarray]) -> dict:
    per = [instance_scores(preds[s], truths[s]) for s in sorted(truths)]
    agg = aggregate_instance_scores(per)
    out = agg.as_dict()
    print(
        f"{name:52s} DSB {out['dsb']:.4f}  F1@0.5 {out['f1']:.3f}  PQ {out['pq']:.3f}  "
        f"merges {out['merges']}  splits {out['splits']}",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, default=Path("/tmp/instances_dsb"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config overrides for the training run (e.g. data.instance_target=contour)",
    )
    args = ap.parse_args()
    work = args.work
    train_dir, test_dir, stems = split(args.data, work, args.fraction, args.seed)
    print(f"held out {len(stems)} of {len(stems) + len(os.listdir(train_dir / 'images'))} images")
    run = work / "run"
    timings = {}
    if not args.skip_train:
        start = time.monotonic()
        unetkit(
            "train",
            "--data",
            str(train_dir),
            "--max-minutes",
            f"{args.minutes:g}",
            "--out",
            str(run),
            *args.set,
        )
        timings["train_s"] = time.monotonic() - start
    for sub in ("pred_instances", "pred_classes"):
        (work / sub).mkdir(exist_ok=True)
    start = time.monotonic()
    unetkit(
        "predict",
        "--model",
        str(run),
        "--input",
        str(test_dir / "images"),
        "--out",
        str(work / "pred_instances"),
        "--instances",
        "--overwrite",
    )
    timings["predict_instances_s"] = time.monotonic() - start
    unetkit(
        "predict",
        "--model",
        str(run),
        "--input",
        str(test_dir / "images"),
        "--out",
        str(work / "pred_classes"),
        "--overwrite",
    )
    truths, inst, comp, ideal = {}, {}, {}, {}
    for s in stems:
        truths[s] = read_mask(next((test_dir / "instances").glob(s + ".*")))
        inst[s] = read_mask(next((work / "pred_instances").glob(f"{s}_instances.*")))
        comp[s] = instances_from_class_map(read_mask(next((work / "pred_classes").glob(s + ".*"))))
        ideal[s] = instances_from_class_map(read_mask(next((test_dir / "masks").glob(s + ".*"))))
    results = {
        "heldout": stems,
        "timings": timings,
        "a_predict_instances": score("(a) predict --instances", inst, truths),
        "b_components_of_own_class_map": score(
            "(b) connected components of the model's class map", comp, truths
        ),
        "c_components_of_true_masks": score(
            "(c) connected components of the true class masks", ideal, truths
        ),
        "d_oracle_separation_of_own_pixels": score(
            "(d) (a)'s pixels separated by the truth (oracle)",
            {s: truth_separated(inst[s] > 0, truths[s]) for s in stems},
            truths,
        ),
    }
    (work / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"written {work / 'results.json'}")


if __name__ == "__main__":
    main()
