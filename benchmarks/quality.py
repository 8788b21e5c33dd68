"""Quality per CPU minute: unetkit's default recipe (and nnU-Net v2, when installed) on a
held-out split of each dataset, at equal wall-clock budgets.

For each dataset of ``--data-root`` (``../shared/data``), a seeded ``--holdout`` share of the
pairs is set aside (symlinks under ``WORK/<name>/test``; never trained on), the rest goes to
``WORK/<name>/train``. Then, for each budget of ``--minutes`` (the issue's table: 10 and 60):

* ``unetkit``: ``unetkit.fit`` with nothing but the data and ``train.max_minutes`` (the default
  recipe), plus any ``--override key=value`` (e.g. ``data.sampling=foreground`` to compare a
  setting), then ``evaluate_model`` on the held-out pairs;
* ``nnunet`` (``--nnunet``; ``make nnunet-venv`` first: nnU-Net v2 in its own venv,
  ``.venv-nnunet``, beside the pinned CPU torch): the dataset converted to nnU-Net's raw layout,
  the 2D configuration planned and preprocessed (not counted in the budget), then nnU-Net's own
  trainer for as many of its epochs as fit the minutes, timed by a short probe
  (``benchmarks/nnunet_budget.py`` says how), prediction on the held-out images with nnU-Net's
  defaults, and the same evaluation.

Scores (one per dataset, as the issue states them): ISBI 2012 adapted Rand error (lower is
better), DSB 2018 foreground IoU, Drosophila mean foreground Dice, CamVid mean IoU over the 11
classes with void (0) ignored; plus Dice per class. The table is printed and, with ``--json``,
written with every number. CamVid's training split gets a ``dataset.yaml`` (class names, void
ignored), as its author would declare it.

Short mode to check that it runs (minutes of CPU)::

    python benchmarks/quality.py --minutes 2 --datasets isbi2012-em camvid-11class

The issue's full run (about 4 x (10 + 60) minutes for unetkit, the same again for nnU-Net)::

    python benchmarks/quality.py --minutes 10 60 --nnunet --json quality.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATASETS = ("isbi2012-em", "dsb2018-nuclei", "drosophila-vnc-sstem", "camvid-11class")
CAMVID_NAMES = [
    "void",
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]
SCORE = {
    "isbi2012-em": ("rand error", "lower"),
    "dsb2018-nuclei": ("fg IoU", "higher"),
    "drosophila-vnc-sstem": ("mean fg Dice", "higher"),
    "camvid-11class": ("mean IoU (11)", "higher"),
}


def split_dataset(src: Path, dest: Path, holdout: float, seed: int) -> tuple[Path, Path]:
    """``dest/train`` and ``dest/test`` as folders of symlinks to ``src``'s pairs (seeded)."""
    from unetkit.data.dataset import find_pairs

    pairs = find_pairs(src)
    order = np.random.default_rng([seed, 4242]).permutation(len(pairs))
    n_test = max(1, round(holdout * len(pairs)))
    test = {pairs[int(i)].stem for i in order[:n_test]}
    for part in ("train", "test"):
        shutil.rmtree(dest / part, ignore_errors=True)
    for pair in pairs:
        part = "test" if pair.stem in test else "train"
        for kind, path in (
            ("images", pair.image),
            ("masks", pair.mask),
            ("instances", pair.instances),
        ):
            if path is None:
                continue
            link = dest / part / kind / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
    if src.name == "camvid-11class":
        for part in ("train", "test"):
            (dest / part / "dataset.yaml").write_text(
                f"class_names: [{', '.join(CAMVID_NAMES)}]\nignore_index: 0\nmodality: photo\n",
                encoding="utf-8",
            )
    return dest / "train", dest / "test"


def scores(name: str, report: Any) -> dict[str, Any]:
    """The dataset's headline score and the Dice per class of an evaluation report."""
    per_class_dice = {int(c): float(report.per_class["dice"][c]) for c in report.classes}
    per_class_iou = {int(c): float(report.per_class["iou"][c]) for c in report.classes}
    if name == "isbi2012-em":
        value = report.mean["rand_error"]
    elif name == "dsb2018-nuclei":
        value = per_class_iou.get(1, math.nan)
    elif name == "drosophila-vnc-sstem":
        value = report.mean["dice"]
    else:  # CamVid: mean IoU over the classes other than void
        value = float(np.nanmean([v for c, v in per_class_iou.items() if c != 0]))
    return {"score": value, "dice": per_class_dice, "iou": per_class_iou}


def run_unetkit(
    train: Path, test: Path, out: Path, minutes: float, overrides: list[str]
) -> dict[str, Any]:
    """Train with the default recipe for ``minutes`` and evaluate on ``test``."""
    import unetkit
    from unetkit.infer.evaluation import evaluate_model
    from unetkit.modelfile import load_with_metadata

    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    result = unetkit.fit(
        None,
        out,
        overrides=[f"data.path={train}", f"train.max_minutes={minutes}", *overrides],
        quiet=True,
    )
    train_s = time.monotonic() - start
    model, metadata = load_with_metadata(out)
    start = time.monotonic()
    evaluation = evaluate_model(model, metadata, test)
    predict_s = time.monotonic() - start
    return {
        "train_seconds": train_s,
        "predict_seconds": predict_s,
        "steps": result.steps,
        "stopped": result.stopped,
        "report": evaluation.report,
    }


def run_nnunet(
    name: str, train: Path, test: Path, work: Path, minutes: float, venv: Path
) -> dict[str, Any]:
    """nnU-Net v2 (2D) for ``minutes`` of training on the CPU; evaluated like unetkit."""
    from unetkit.infer.evaluation import evaluate_folders
    from unetkit.io.images import read_image, read_mask, write_image

    raw, pre, res = work / "raw", work / "preprocessed", work / "results"
    env = {
        **os.environ,
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(pre),
        "nnUNet_results": str(res),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ds_id = 500 + DATASETS.index(name)
    ds = raw / f"Dataset{ds_id:03d}_{name.replace('-', '')}"
    shutil.rmtree(work, ignore_errors=True)
    labels: set[int] = set()
    channels = 1
    void = name == "camvid-11class"
    for part, folder in (("Tr", train), ("Ts", test)):
        (ds / f"images{part}").mkdir(parents=True, exist_ok=True)
        (ds / f"labels{part}").mkdir(parents=True, exist_ok=True)
        for mask_path in sorted((folder / "masks").iterdir()):
            stem = mask_path.stem
            image = read_image(next((folder / "images").glob(stem + ".*")))
            channels = image.shape[0]
            for c in range(channels):
                write_image(ds / f"images{part}" / f"{stem}_{c:04d}.png", image[c : c + 1])
            mask = read_mask(mask_path)
            if void:  # nnU-Net needs background 0 and the ignore label last: 0 -> K-1, k -> k-1
                mask = np.where(mask == 0, len(CAMVID_NAMES) - 1, mask - 1)
            labels |= set(np.unique(mask).tolist())
            write_image(ds / f"labels{part}" / f"{stem}.png", mask[None].astype(np.uint8))
    k = len(CAMVID_NAMES) if void else max(labels) + 1
    label_names = {("background" if c == 0 else f"class{c}"): c for c in range(k)}
    if void:
        label_names = {"background": 0, **{f"class{c}": c for c in range(1, k - 1)}}
        label_names["ignore"] = k - 1
    n_train = len(list((train / "masks").iterdir()))
    (ds / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {str(c): "image" for c in range(channels)},
                "labels": label_names,
                "numTraining": n_train,
                "file_ending": ".png",
            }
        )
    )

    subprocess.run(
        ["nnUNetv2_plan_and_preprocess", "-d", str(ds_id), "-c", "2d"], env=env, check=True
    )
    pred = work / "pred"
    driver = Path(__file__).with_name("nnunet_budget.py")
    log = work / "nnunet.log"  # nnU-Net's own output; the driver's last line is its JSON
    with log.open("w") as out:
        command = [str(venv / "bin" / "python"), str(driver), "--dataset", str(ds_id)]
        command += ["--minutes", str(minutes), "--images", str(ds / "imagesTs")]
        subprocess.run([*command, "--out", str(pred)], env=env, check=True, stdout=out)
    timing = json.loads(log.read_text().strip().splitlines()[-1])
    if void:  # back to CamVid's labels (nnU-Net never predicts the ignore label)
        back = work / "pred-camvid"
        back.mkdir()
        for f in sorted(pred.glob("*.png")):
            write_image(back / f.name, (read_mask(f) + 1)[None].astype(np.uint8))
        pred = back
    evaluation = evaluate_folders(
        pred, test / "masks", num_classes=k, ignore_index=0 if void else None
    )
    return {**timing, "report": evaluation.report}


def format_table(rows: list[dict[str, Any]]) -> str:
    """One row per (dataset, method, minutes): score, time, Dice per class."""
    lines = [
        f"{'dataset':<22} {'method':<9} {'min':>5} {'score':>16} {'train s':>8} {'pred s':>7}  "
        f"Dice per class"
    ]
    for r in rows:
        metric, _better = SCORE[r["dataset"]]
        dice = " ".join(f"{c}:{v:.2f}" for c, v in r["dice"].items())
        lines.append(
            f"{r['dataset']:<22} {r['method']:<9} {r['minutes']:>5g} "
            f"{metric + ' ' + format(r['score'], '.4f'):>16} {r['train_seconds']:>8.0f} "
            f"{r['predict_seconds']:>7.1f}  {dice}"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--minutes", nargs="+", type=float, default=[10.0, 60.0])
    p.add_argument("--holdout", type=float, default=0.2, help="share of pairs held out")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    p.add_argument("--work", default="runs/quality", help="splits and run folders go here")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label", default="unetkit", help="name of the unetkit row")
    p.add_argument("--nnunet", action="store_true", help="also run nnU-Net v2 (make nnunet-venv)")
    p.add_argument("--skip-unetkit", action="store_true", help="only the nnU-Net rows")
    p.add_argument("--nnunet-venv", default=".venv-nnunet", help="the venv nnU-Net v2 is in")
    p.add_argument("--json", metavar="FILE", help="write every number as JSON")
    args = p.parse_args()
    work = Path(args.work)
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        train, test = split_dataset(
            Path(args.data_root) / name, work / name, args.holdout, args.seed
        )
        for minutes in args.minutes:
            methods = [] if args.skip_unetkit else [args.label]
            methods += ["nnunet"] if args.nnunet else []
            for method in methods:
                if method == "nnunet":
                    venv = Path(args.nnunet_venv).resolve()
                    if not (venv / "bin" / "nnUNetv2_plan_and_preprocess").exists():
                        print(f"nnU-Net v2 is not in {venv} (make nnunet-venv); skipped")
                        continue
                    out = run_nnunet(
                        name, train, test, work / name / f"nnunet-{minutes:g}", minutes, venv
                    )
                else:
                    run_dir = work / name / f"{method}-{minutes:g}min"
                    out = run_unetkit(train, test, run_dir, minutes, args.override)
                report = out.pop("report")
                row = {"dataset": name, "method": method, "minutes": minutes, **out}
                row.update(scores(name, report))
                rows.append(row)
                print(format_table([row]).splitlines()[1], flush=True)
    print()
    print(format_table(rows))
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float) + "\n")


if __name__ == "__main__":
    sys.exit(main())
