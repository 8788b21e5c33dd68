"""A quick check of the claim on DSB 2018 nuclei: boundary target + watershed vs class-map blobs.

Written before instance training was wired into `unetkit train` (``instances_dsb.py`` now
measures the real command line); kept as a hand-rolled loop for comparison: the same held-out
fifth as
``benchmarks/instances_ceiling.py``; random 128 x 128 patches with flips and 90-degree
rotations, per-image z-score, cross-entropy weighted by the paper's border weight map, Adam, a
fixed wall-clock budget. ``--target boundary`` learns the three-class boundary target (weight
map on the interiors, so the contact zones weigh most); ``--target binary`` learns the class
mask (weight map on the instances). Then, on the held-out images, through the tiled predictor:

* ``instances``: seeds + watershed on the boundary probabilities (default parameters, and the
  parameters the tuner picks on 8 training images), boundary target only;
* ``components``: connected components of the model's own class map (for the boundary model,
  interior or border = nucleus).

    PYTHONPATH=src python benchmarks/instances_quick_train.py --target boundary --minutes 4

Measured once with ``--minutes 5`` on a machine shared by four test suites (so only ~150 steps,
far too few; mean DSB score over the 15 held-out images):

    boundary target, 145 steps: instances 0.2831 (tuned 0.2871), components of its own map 0.2663
    binary target,   163 steps: components of its own class map 0.2981

At this budget the networks have barely learnt the nuclei, and no conclusion about the claim
follows; the ceilings (``instances_ceiling.py``: 0.74 for components of a perfect class map,
0.99 for the ideal boundary target) say what a well-trained network can reach.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from unetkit.data import load_dataset, normalize
from unetkit.infer.predictor import predict_probabilities
from unetkit.instances import (
    INTERIOR,
    boundary_target,
    instances_from_class_map,
    instances_from_probabilities,
    tune_instance_params,
)
from unetkit.metrics import aggregate_instance_scores, instance_scores
from unetkit.model import UNet, UNetConfig
from unetkit.train import border_weight_map

META = {"normalization": {"mode": "per_image", "mean": None, "std": None, "clip": None}}


def _batch(rng, images, targets, weights, patch, batch):  # type: ignore[no-untyped-def]
    xs, ys, ws = [], [], []
    for _ in range(batch):
        i = int(rng.integers(len(images)))
        h, w = targets[i].shape
        r, c = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        x = images[i][:, r : r + patch, c : c + patch]
        y = targets[i][r : r + patch, c : c + patch]
        wt = weights[i][r : r + patch, c : c + patch]
        k = int(rng.integers(4))
        x, y, wt = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k), np.rot90(wt, k)
        if rng.random() < 0.5:
            x, y, wt = x[:, :, ::-1], y[:, ::-1], wt[:, ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
        ws.append(np.ascontiguousarray(wt))
    return (torch.from_numpy(np.stack(a)) for a in (xs, ys, ws))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/dsb2018-nuclei")
    p.add_argument("--target", choices=("boundary", "binary"), default="boundary")
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--widths", default="16,32,64,128")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    samples = load_dataset(args.data)
    stems = sorted(s.stem for s in samples)
    rng = np.random.default_rng(0)  # the held-out fifth of instances_ceiling.py
    held_out = set(rng.choice(stems, size=max(1, len(stems) // 5), replace=False).tolist())
    train = [s for s in samples if s.stem not in held_out]
    val = [s for s in samples if s.stem in held_out]

    images, targets, weights = [], [], []
    for s in train:
        inst = s.instances if s.instances is not None else s.mask
        images.append(normalize(s.image))
        if args.target == "boundary":
            t = boundary_target(inst).astype(np.int64)
            objects = np.where(t == INTERIOR, inst, 0)
        else:
            t, objects = (s.mask > 0).astype(np.int64), inst
        targets.append(t)
        weights.append(border_weight_map(objects, from_components=False))
    n_out = 3 if args.target == "boundary" else 2
    widths = tuple(int(w) for w in args.widths.split(","))
    model = UNet(UNetConfig(in_channels=3, out_channels=n_out, widths=widths))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start, step, losses = time.time(), 0, []
    model.train()
    while time.time() - start < args.minutes * 60:
        x, y, w = _batch(rng, images, targets, weights, 128, 8)
        ce = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
        loss = (ce * w).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
    model.eval()
    train_seconds = time.time() - start

    def probs_of(s):  # type: ignore[no-untyped-def]
        return predict_probabilities(model, s.image, metadata=META, precision="fp32")

    result: dict[str, object] = {
        "target": args.target,
        "steps": step,
        "train_seconds": round(train_seconds),
        "loss_last_50": round(float(np.mean(losses[-50:])), 4),
        "val_images": len(val),
    }
    comp, inst_default, inst_tuned = [], [], []
    params = None
    if args.target == "boundary":
        tune_set = train[:: max(1, len(train) // 8)][:8]
        tuned = tune_instance_params(
            [probs_of(s) for s in tune_set], [s.instances for s in tune_set]
        )
        params = tuned.params
        result["tuned_params"] = params.to_dict()
        result["tune_seconds"] = round(tuned.seconds, 1)
    for s in val:
        probs = probs_of(s)
        fg = np.argmax(probs, axis=0) > 0
        comp.append(instance_scores(instances_from_class_map(fg.astype(np.int64)), s.instances))
        if params is not None:
            inst_default.append(instance_scores(instances_from_probabilities(probs), s.instances))
            inst_tuned.append(
                instance_scores(instances_from_probabilities(probs, params), s.instances)
            )
    result["dsb_components_of_own_class_map"] = round(aggregate_instance_scores(comp).dsb, 4)
    if params is not None:
        result["dsb_instances_default"] = round(aggregate_instance_scores(inst_default).dsb, 4)
        result["dsb_instances_tuned"] = round(aggregate_instance_scores(inst_tuned).dsb, 4)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
