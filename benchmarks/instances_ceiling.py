"""What a class map can reach on DSB 2018 nuclei, and what the boundary target can reach.

On ``../shared/data/dsb2018-nuclei`` (``instances/`` = 16-bit per-nucleus ids), for every image:

* **ceiling of class maps**: connected components of the *ground-truth* class mask (``masks/``),
  scored by the DSB 2018 score against the instance truth. No network that outputs a class map
  and splits it by connected components can beat this: touching nuclei merge.
* **ideal boundary target**: the three-class boundary target made from the truth, as one-hot
  probabilities, through the seeds + watershed post-processing with the default parameters
  (sanity: near 1; what is lost is the post-processing's own loss).
* **blurred boundary target**: the same probabilities smoothed by a Gaussian (sigma 1.5 px), a
  stand-in for a network's soft, blurred output; and the tuner's choice on a held-out fifth.
* **rim sensitivity**: the *true instances* themselves (perfect detection and separation) with
  every object eroded by one pixel, dilated by one pixel, or moved by -1 / 0 / +1 pixel at
  random per object: how much a one-pixel rim error alone costs at the score's high IoU
  thresholds, which is the margin any learned output has against the class-map ceiling.

Also times the pieces that run per image: target, distance map, post-processing, object table
(on the 1024 x 1024 images, the largest), and the tuner's grid search.

    PYTHONPATH=src python benchmarks/instances_ceiling.py [--json out.json]

Measured on the 76 images here (mean DSB score over images; 2 shared CPU cores):

    connected components of the truth class mask, 4-connected   0.7418  (427 merges)
    connected components of the truth class mask, 8-connected   0.7355  (435 merges)
    ideal boundary target (touching, width 2) + watershed       0.9934  (0 merges, 6 splits)
      the same blurred by sigma 1.5 px, default parameters      0.8930  (79 merges)
      width 1 instead, blurred by sigma 1 px                    0.9149  (0.9869 with seeds > 0.7)
    true instances, every object eroded by 1 px                 0.5040  (F1 0.941)
    true instances, every object dilated by 1 px                0.6512  (F1 1.000)
    true instances, each object -1 / 0 / +1 px at random        0.6735  (F1 0.981)

Per 1024 x 1024 image: target 0.07 s, distance map 0.23 s, post-processing 0.07 s, object
table 0.06 s. The tuner's 54 settings on 15 blurred images: 5.3 s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.segmentation import expand_labels

from unetkit.instances import (
    InstanceParams,
    boundary_target,
    distance_target,
    instances_from_class_map,
    instances_from_probabilities,
    object_table,
    tune_instance_params,
)
from unetkit.io.images import read_image, read_mask
from unetkit.metrics import aggregate_instance_scores, instance_scores


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _one_hot(target: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.eye(3, dtype=np.float32)[target], -1, 0)


def _blurred(probs: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([ndimage.gaussian_filter(p, sigma) for p in probs])


def _eroded(labels: np.ndarray) -> np.ndarray:
    """Every object eroded by one pixel (face connectivity), each on its own."""
    out = np.zeros_like(labels)
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            inner = ndimage.binary_erosion(np.pad(labels[box] == i, 1))[1:-1, 1:-1]
            out[box][inner] = i
    return out


def _jittered(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each object eroded, kept or dilated by one pixel, drawn per object."""
    shrunk, grown = _eroded(labels), expand_labels(labels, 1)
    choice = rng.integers(0, 3, size=int(labels.max()) + 1)
    out = np.where(choice[labels] == 0, shrunk, labels)
    grow = (labels == 0) & (choice[grown] == 2)
    return np.where(grow, grown, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/dsb2018-nuclei")
    p.add_argument("--width", type=int, default=2, help="border width of the target (px)")
    p.add_argument("--border", default="touching", choices=("touching", "contour"))
    p.add_argument("--sigma", type=float, default=1.5, help="blur of the soft stand-in (px)")
    p.add_argument("--json", help="also write the numbers to this (new) JSON file")
    args = p.parse_args()
    data = Path(args.data)
    stems = sorted(f.stem for f in (data / "instances").glob("*.png"))
    rng = np.random.default_rng(0)
    held_out = set(rng.choice(stems, size=max(1, len(stems) // 5), replace=False).tolist())

    rows: dict[str, list] = {
        k: [] for k in ("cc4", "cc8", "ideal", "blurred", "eroded", "dilated", "jittered")
    }
    times: dict[str, list[float]] = {k: [] for k in ("target", "distance", "post", "table")}
    val_probs, val_truth = [], []
    for stem in stems:
        truth = read_mask(data / "instances" / f"{stem}.png")
        mask = read_mask(data / "masks" / f"{stem}.png")
        big = truth.size >= 1024 * 1024
        rows["cc4"].append(instance_scores(instances_from_class_map(mask), truth))
        cc8 = instances_from_class_map(mask, connectivity=2)
        rows["cc8"].append(instance_scores(cc8, truth))
        rows["eroded"].append(instance_scores(_eroded(truth), truth))
        rows["dilated"].append(instance_scores(expand_labels(truth, 1), truth))
        rows["jittered"].append(instance_scores(_jittered(truth, rng), truth))
        target, t_target = _timed(boundary_target, truth, width=args.width, border=args.border)
        probs = _one_hot(target)
        ideal, t_post = _timed(instances_from_probabilities, probs)
        rows["ideal"].append(instance_scores(ideal, truth))
        soft = _blurred(probs, args.sigma)
        rows["blurred"].append(instance_scores(instances_from_probabilities(soft), truth))
        if stem in held_out:
            val_probs.append(soft)
            val_truth.append(truth)
        if big:
            image = read_image(data / "images" / f"{stem}.png")
            times["target"].append(t_target)
            times["post"].append(t_post)
            times["distance"].append(_timed(distance_target, truth)[1])
            times["table"].append(_timed(object_table, ideal, image=image, class_map=mask)[1])

    tuned = tune_instance_params(val_probs, val_truth)
    val_default = np.mean(
        [
            instance_scores(instances_from_probabilities(pr, InstanceParams()), t).dsb
            for pr, t in zip(val_probs, val_truth, strict=True)
        ]
    )
    summary = {
        name: {
            k: v if isinstance(v, int) else round(float(v), 4)
            for k, v in aggregate_instance_scores(r).as_dict().items()
            if k in ("dsb", "f1", "pq", "seg", "merges", "splits", "n_truth", "n_pred")
        }
        for name, r in rows.items()
    }
    result = {
        "images": len(stems),
        "border": args.border,
        "width": args.width,
        "scores": summary,
        "seconds_1024x1024": {k: round(float(np.mean(v)), 4) for k, v in times.items() if v},
        "tuner": {
            "images": len(val_probs),
            "settings": len(tuned.scores),
            "seconds": round(tuned.seconds, 2),
            "default_dsb": round(float(val_default), 4),
            "tuned_dsb": round(tuned.score, 4),
            "params": tuned.params.to_dict(),
        },
    }
    print(f"DSB 2018 score over {len(stems)} images of {data} (mean over images)")
    labels = {
        "cc4": "connected components of the truth class mask (4-conn.)",
        "cc8": "connected components of the truth class mask (8-conn.)",
        "ideal": f"ideal boundary target ({args.border}, width {args.width}) + watershed",
        "blurred": f"  the same, blurred by sigma {args.sigma} px",
        "eroded": "true instances, every object eroded by 1 px",
        "dilated": "true instances, every object dilated by 1 px",
        "jittered": "true instances, each object -1 / 0 / +1 px at random",
    }
    for name, text in labels.items():
        s = summary[name]
        print(
            f"  {text:58s} DSB {s['dsb']:.4f}  F1 {s['f1']:.4f}  PQ {s['pq']:.4f}  "
            f"SEG {s['seg']:.4f}  merges {s['merges']:4d}  splits {s['splits']:3d}"
        )
    print("seconds per 1024x1024 image:", result["seconds_1024x1024"])
    print("tuner:", result["tuner"])
    if args.json:
        with open(args.json, "x", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
