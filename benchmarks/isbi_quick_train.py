"""Train a small U-Net on part of ISBI 2012 EM and keep the rest aside for `unetkit evaluate`.

A stand-in until `unetkit train` is merged: random 128x128 patches with flips and 90-degree
rotations, per-image z-score normalisation, cross-entropy, Adam, a fixed wall-clock budget.
Writes ``OUT/run/model.safetensors`` (with the trained-model metadata convention) and
``OUT/val/{images,masks}`` (symlinks to the held-out pairs), then:

    unetkit evaluate --model OUT/run --data OUT/val --json OUT/eval.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from unetkit.data import load_dataset, normalize
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/isbi2012-em")
    p.add_argument("--out", default="runs/isbi-quick")
    p.add_argument("--val", type=int, default=6, help="last N slices kept aside (default 6)")
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data, out = Path(args.data), Path(args.out)
    samples = load_dataset(data)
    train, val = samples[: -args.val], samples[-args.val :]
    (out / "val" / "images").mkdir(parents=True, exist_ok=True)
    (out / "val" / "masks").mkdir(parents=True, exist_ok=True)
    (out / "run").mkdir(parents=True, exist_ok=True)
    for s in val:
        for kind in ("images", "masks"):
            link = out / "val" / kind / f"{s.stem}.png"
            if not link.exists():
                link.symlink_to((data / kind / f"{s.stem}.png").resolve())
    images = [normalize(s.image) for s in train]
    masks = [s.mask for s in train]
    model = UNet(UNetConfig(widths=(16, 32, 64, 128)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    patch, batch = 128, 8
    start, step, losses = time.time(), 0, []
    while time.time() - start < args.minutes * 60:
        xs, ys = [], []
        for _ in range(batch):
            i = rng.integers(len(images))
            r, c = rng.integers(0, 512 - patch, size=2)
            x = images[i][:, r : r + patch, c : c + patch]
            y = masks[i][r : r + patch, c : c + patch]
            k = int(rng.integers(4))
            x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
            if rng.random() < 0.5:
                x, y = x[:, :, ::-1], y[:, ::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        logits = model(torch.from_numpy(np.stack(xs)))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.stack(ys)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        step += 1
    meta = {
        "num_classes": 2,
        "ignore_index": None,
        "spatial_dims": 2,
        "in_channels": 1,
        "patch_size": [patch, patch],
        "normalization": {"mode": "per_image", "mean": None, "std": None, "clip": None},
        "class_names": ["cell interior", "membrane"],
    }
    save(model.eval(), out / "run" / "model.safetensors", metadata=meta)
    print(
        json.dumps(
            {
                "steps": step,
                "seconds": round(time.time() - start),
                "loss_last_50": float(np.mean(losses[-50:])),
                "train": [s.stem for s in train],
                "val": [s.stem for s in val],
            }
        )
    )


if __name__ == "__main__":
    main()
