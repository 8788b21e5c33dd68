"""``unetkit generate``: sample images from a diffusion model (DDPM or DDIM, seeded)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from unetkit.errors import UnetkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate images with a diffusion model (task=diffusion)",
        description=(
            "Sample images from a model trained with `unetkit train task=diffusion`: one PNG "
            "per image (8-bit, the data range [-1, 1] mapped to 0..255), grid.png with all of "
            "them, samples.npy (float32, in the training data's units) and samples.json (the "
            "classes and settings). The same --seed gives the same images. Writes only into a "
            "new or empty folder or one it wrote before."
        ),
    )
    p.add_argument("--model", required=True, help="a diffusion model file or its run folder")
    p.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    p.add_argument("--steps", type=int, help="network evaluations (ddpm: all T, ddim: 50)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    p.add_argument(
        "--class", dest="label", type=int, help="class of every image (default: in turn)"
    )
    p.add_argument(
        "--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = none)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--weights",
        choices=("ema", "raw"),
        default="ema",
        help="the EMA weights (default) or the raw weights of the run's last checkpoint",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace images it wrote before")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from unetkit.diffusion.generate import (
        check_request,
        generate,
        grid,
        labels_for,
        load_denoiser,
        to_uint8,
        to_units,
    )
    from unetkit.infer.output_folder import OutputFolder, settings_digest
    from unetkit.io.atomic import atomic_save_bytes
    from unetkit.io.png import png_bytes
    from unetkit.modelfile import weights_digest

    for name, value in (
        ("--n", args.n),
        ("--steps", args.steps),
        ("--batch-size", args.batch_size),
    ):
        if value is not None and value < 1:
            raise UnetkitError(f"{name} {value}: expected a positive integer")
    d = load_denoiser(args.model, weights=args.weights)
    check_request(d, args.label, args.guidance)
    labels = labels_for(d, args.n, args.label)
    out = OutputFolder.claim(Path(args.out))
    width = max(4, len(str(args.n - 1)))
    names = [
        f"sample-{i:0{width}d}" + ("" if labels is None else f"-class-{int(labels[i])}") + ".png"
        for i in range(args.n)
    ]
    rels = [*names, "grid.png", "samples.npy", "samples.json"]
    identity = {
        "model_sha256": weights_digest(d.model),
        "n": args.n,
        "sampler": args.sampler,
        "steps": args.steps,
        "class": args.label,
        "guidance": args.guidance,
        "seed": args.seed,
        "weights": args.weights,
    }
    digest = settings_digest(identity)
    if out.check(rels, digest, overwrite=args.overwrite):
        print(f"{args.out}: already generated with these settings; nothing to do")
        return 0
    steps = args.steps or (d.schedule.timesteps if args.sampler == "ddpm" else 50)
    total = steps * -(-args.n // args.batch_size)
    with tqdm(total=total, desc="sampling", unit="step", disable=args.quiet) as bar:
        images = generate(
            d,
            args.n,
            sampler=args.sampler,
            steps=args.steps,
            labels=labels,
            guidance=args.guidance,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=bar.update,
        )
    out.remove_own_temporaries()
    out.record(rels, digest, identity)
    out.close()  # one record: the manifest at once
    pixels = to_uint8(images)
    for name, img in zip(names, pixels, strict=True):
        atomic_save_bytes(out.root / name, png_bytes(img[0] if img.shape[0] == 1 else img))
    g = grid(pixels)
    atomic_save_bytes(out.root / "grid.png", png_bytes(g[0] if g.shape[0] == 1 else g))
    buf = io.BytesIO()
    np.save(buf, to_units(d, images))
    atomic_save_bytes(out.root / "samples.npy", buf.getvalue())
    meta = {**identity, "labels": None if labels is None else labels.tolist(), "files": names}
    atomic_save_bytes(out.root / "samples.json", json.dumps(meta, indent=1).encode())
    print(f"wrote {args.n} image(s), grid.png and samples.npy to {args.out}")
    return 0
