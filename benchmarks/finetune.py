"""Fine-tuning against training from scratch with 4 labelled images, same CPU minutes.

DSB 2018 nuclei (``../shared/data/dsb2018-nuclei``; ``manifest.csv`` names each image's kind):

1. pre-train on every fluorescence image (``unetkit train``, ``--minutes``);
2. take 4 labelled images of the other kinds (2 stained-tissue colour, 2 brightfield grey,
   seeded choice); the remaining images of those kinds are held out;
3. fine-tune the pre-trained model on the 4 (``--init-from``) and train the same architecture
   from scratch on the 4, each for ``--minutes`` (sequentially, same threads);
4. ``unetkit evaluate`` both on the held-out images: Dice and IoU of the nucleus class.

Prints one line per arm and the ratio fine-tuned / scratch. Each run holds one of its 4 images
out for validation (model selection), as ``unetkit train`` does with any dataset.

    python benchmarks/finetune.py --minutes 3 --out runs/bench-finetune
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

KINDS_OTHER = ("stained tissue", "brightfield greyscale")


def _link_dataset(src: Path, stems: list[str], dst: Path) -> Path:
    for kind in ("images", "masks"):
        (dst / kind).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            link = dst / kind / f"{stem}.png"
            if not link.exists():
                link.symlink_to((src / kind / f"{stem}.png").resolve())
    return dst


def _train(out: Path, reuse: bool, *args: str) -> None:
    if reuse and (out / "model.safetensors").is_file():
        print(f"    (reusing {out})")
        return
    _unetkit("train", "--out", str(out), *args)


def _unetkit(*args: str) -> None:
    env = dict(os.environ)
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "unetkit", *args], env=env, text=True,
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"unetkit {' '.join(args)} failed:\n{done.stderr}")
    for line in done.stdout.splitlines():
        if line.startswith(("init:", "recipe:", "finished", "time", "measured")):
            print("   ", line[:160])


def _evaluate(run: Path, data: Path, out: Path) -> dict[str, float]:
    _unetkit("evaluate", "--model", str(run), "--data", str(data), "--json", str(out),
             "--boundary-class", "none")  # fmt: skip
    mean = json.loads(out.read_text())["mean"]
    return {"dice": float(mean["dice"]), "iou": float(mean["iou"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/dsb2018-nuclei")
    p.add_argument("--out", default="runs/bench-finetune")
    p.add_argument("--minutes", type=float, default=3.0, help="budget of fine-tune and scratch")
    p.add_argument("--pretrain-minutes", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--also-lr",
        type=float,
        metavar="LR",
        help="a further fine-tuning arm with this train.lr (e.g. 0.0003, a tenth of the recipe's)",
    )
    p.add_argument("--reuse", action="store_true", help="keep runs already in --out")
    p.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="give fine-tune and scratch N optimiser steps each (5 epochs) instead of --minutes: "
        "equal work when the machine is shared and wall-clock minutes are not CPU minutes",
    )
    args = p.parse_args()
    data, out = Path(args.data), Path(args.out)
    with (data / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fluo = [r["image_id"] for r in rows if r["group"].startswith("fluorescence")]
    rng = random.Random(args.seed)
    few: list[str] = []
    for kind in KINDS_OTHER:
        stems = sorted(r["image_id"] for r in rows if r["group"].startswith(kind))
        few += rng.sample(stems, 2)
    held = sorted(
        r["image_id"]
        for r in rows
        if r["group"].startswith(KINDS_OTHER) and r["image_id"] not in few
    )
    print(f"fluorescence {len(fluo)} images; fine-tune on {len(few)}; held out {len(held)}")
    sets = {
        "fluo": _link_dataset(data, fluo, out / "data" / "fluo"),
        "few": _link_dataset(data, few, out / "data" / "few"),
        "held": _link_dataset(data, held, out / "data" / "held"),
    }
    # a small network and patches: the machine these run on is a shared CPU
    small = ["model.widths=[8,16,32,64]", "--patch-size", "96", "--batch-size", "4",
             "data.val_fraction=0.1", f"train.threads={args.threads}",
             "train.int8_calibration=false", "--seed", str(args.seed)]  # fmt: skip
    budget = ["--max-minutes", f"{args.minutes:g}", *small]
    if args.steps:
        budget = ["--epochs", "5", f"train.steps_per_epoch={max(1, args.steps // 5)}", *small]
    t0 = time.time()
    print(f"1. pre-train on fluorescence ({args.pretrain_minutes:g} min)")
    _train(out / "pretrained", args.reuse, "--data", str(sets["fluo"]),
           "--max-minutes", f"{args.pretrain_minutes:g}", *small)  # fmt: skip
    import yaml

    model = yaml.safe_load((out / "pretrained" / "config.yaml").read_text())["model"]
    same_arch = [f"model.{k}={json.dumps(model[k])}" for k in ("norm", "padding")]
    print(f"2. fine-tune on {len(few)} images ({args.minutes:g} min)")
    arms = ["finetuned", "scratch", "pretrained"]
    _train(out / "finetuned", args.reuse, "--data", str(sets["few"]),
           "--init-from", str(out / "pretrained"), *budget)  # fmt: skip
    if args.also_lr is not None:
        print(f"2b. fine-tune with train.lr={args.also_lr:g} ({args.minutes:g} min)")
        lr = f"train.lr={args.also_lr}"
        _train(out / "finetuned-lr", args.reuse, "--data", str(sets["few"]),
               "--init-from", str(out / "pretrained"), *budget, lr)  # fmt: skip
        arms.insert(1, "finetuned-lr")
    print(f"3. from scratch on the same {len(few)} images ({args.minutes:g} min)")
    _train(out / "scratch", args.reuse, "--data", str(sets["few"]), *budget, *same_arch)
    scores = {}
    for arm in arms:
        file = out / f"{arm}-eval.json"
        scores[arm] = _evaluate(out / arm, sets["held"], file) if not (
            args.reuse and file.is_file()
        ) else {k: float(json.loads(file.read_text())["mean"][k]) for k in ("dice", "iou")}
    print(f"held-out other-kind images: {len(held)} (total {(time.time() - t0) / 60:.1f} min)")
    for arm, s in scores.items():
        print(f"  {arm:10s} Dice {s['dice']:.4f}  IoU {s['iou']:.4f}")
    ft, sc = scores["finetuned"], scores["scratch"]
    print(f"fine-tuned / scratch: Dice x{ft['dice'] / max(sc['dice'], 1e-9):.2f}, "
          f"IoU x{ft['iou'] / max(sc['iou'], 1e-9):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
