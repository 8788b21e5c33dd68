"""Accuracy of model variants under one CPU budget, on held-out images of the real datasets.

For each dataset in ``../shared/data`` every fifth image (sorted by stem) is held out; the rest
is the training set (folders of symlinks, nothing copied). Each variant is trained by the public
command line, ``unetkit train --data TRAIN --max-minutes M --seed S [overrides]``, so the recipe
chooses everything the variant does not set, then ``unetkit evaluate --model RUN --data TEST``
scores it. Variants run one after the other on the same machine, each with the same budget.

    python benchmarks/encoder_budget.py --minutes 3 \
        --variant plain= --variant "resenc=model.block=residual model.down=strided \
        model.encoder_blocks=[1,3,4,6]"

prints a table of mean foreground Dice per dataset and variant, and the ratio of each variant to
the first; writes ``benchmarks/results/encoder_budget.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATASETS = ("isbi2012-em", "drosophila-vnc-sstem", "dsb2018-nuclei", "camvid-11class")


def split_dataset(source: Path, dest: Path, every: int = 5) -> tuple[Path, Path]:
    """Symlink folders ``dest/train`` and ``dest/test`` (every ``every``-th stem held out)."""
    stems = sorted(p.stem for p in (source / "images").iterdir())
    held = set(stems[every - 1 :: every])
    roots = {"train": dest / "train", "test": dest / "test"}
    for sub in ("images", "masks", "instances"):
        if not (source / sub).is_dir():
            continue
        for path in sorted((source / sub).iterdir()):
            part = "test" if path.stem in held else "train"
            folder = roots[part] / sub
            folder.mkdir(parents=True, exist_ok=True)
            (folder / path.name).symlink_to(path.resolve())
    return roots["train"], roots["test"]


def run_variant(
    train: Path, test: Path, run: Path, minutes: float, seed: int, extra: list[str]
) -> dict[str, float | None]:
    """Train one variant and evaluate it on the held-out images."""
    cli = [sys.executable, "-m", "unetkit"]
    start = time.perf_counter()
    subprocess.run(
        [
            *cli,
            "train",
            "--data",
            str(train),
            "--out",
            str(run),
            "--max-minutes",
            str(minutes),
            "--seed",
            str(seed),
            "--quiet",
            *extra,
        ],
        check=True,
    )
    seconds = time.perf_counter() - start
    result = run.parent / f"{run.name}.json"
    subprocess.run(
        [*cli, "evaluate", "--model", str(run), "--data", str(test), "--json", str(result)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    mean = json.loads(result.read_text())["mean"]
    return {"dice": mean.get("dice"), "iou": mean.get("iou"), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0, help="budget per training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=ARGS",
        help="a name and extra train arguments, split as a shell would (may be empty)",
    )
    args = p.parse_args()
    variants = []
    for spec in args.variant:
        name, _, extra = spec.partition("=")
        variants.append((name, shlex.split(extra)))
    results: dict[str, dict[str, dict[str, float | None]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            train, test = split_dataset(DATA / dataset, Path(tmp) / dataset)
            results[dataset] = {}
            for name, extra in variants:
                run = Path(tmp) / dataset / f"run-{name}"
                results[dataset][name] = run_variant(
                    train, test, run, args.minutes, args.seed, extra
                )
                print(dataset, name, results[dataset][name], flush=True)
    first = variants[0][0]
    header = "| dataset | " + " | ".join(f"{n} Dice" for n, _ in variants)
    header += " | " + " | ".join(f"{n}/{first}" for n, _ in variants[1:]) + " |"
    print(f"\n{args.minutes:g} min per training, load {os.getloadavg()[0]:.1f}\n")
    print(header)
    print("|" + "---|" * (1 + 2 * len(variants) - 1))
    for dataset, row in results.items():
        dice = [row[n]["dice"] for n, _ in variants]
        cells = [f"{d:.4f}" if d is not None else "-" for d in dice]
        ratios = [f"{d / dice[0]:.3f}" if d is not None and dice[0] else "-" for d in dice[1:]]
        print(f"| {dataset} | " + " | ".join(cells + ratios) + " |")
    out = Path(__file__).resolve().parent / "results" / "encoder_budget.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"minutes": args.minutes, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
