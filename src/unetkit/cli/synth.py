"""``unetkit synth OUT``: write the built-in synthetic dataset to a folder.

The folder has ``images/``, ``masks/`` and ``instances/`` like any unetkit dataset, so the
synthetic data can be looked at, predicted and evaluated with the other commands. Images are
float32 TIFF (NumPy ``.npy`` for 1D signals); masks and instance ids are PNG (2D) or TIFF (3D).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError

SUFFIX = {1: (".npy", ".npy"), 2: (".tif", ".png"), 3: (".tif", ".tif")}


MARKER = ".unetkit-synth"
"""Marks a folder written by ``unetkit synth``; ``--overwrite`` writes over those only."""


def add_parser(subparsers: Any) -> None:
    """Register ``synth`` on the top-level subparsers."""
    p = subparsers.add_parser(
        "synth",
        help="write the built-in synthetic dataset (cell-like objects) to a folder",
        description="Write N synthetic images with masks and instance ids to OUT/images, "
        "OUT/masks and OUT/instances. `unetkit train` without --data trains on this data "
        "(seed 0); another --seed gives images it has never seen.",
    )
    p.add_argument("out", metavar="OUT", help="folder to create")
    p.add_argument("--n", type=int, default=8, help="number of images (default 8)")
    p.add_argument("--spatial-dims", type=int, choices=(1, 2, 3), default=2)
    p.add_argument("--size", type=int, default=None, help="side length (default per dims)")
    p.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write over an earlier synthetic dataset in OUT (never over other files)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.data.synthetic import make_synthetic
    from unetkit.io.images import write_image, write_mask

    out = Path(args.out)
    if args.n < 1:
        raise ValueError(f"--n: expected a positive number of images, got {args.n}")
    if out.exists() and not out.is_dir():
        raise UnetkitError(f"{out}: is a file, not a folder; choose a new folder for OUT")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UnetkitError(
                f"{out}: folder holds files that unetkit synth did not write (no {MARKER}); "
                f"unetkit never writes over them. Choose a new or empty folder for OUT"
            )
        if not args.overwrite:
            raise UnetkitError(
                f"{out}: holds an earlier synthetic dataset; use --overwrite to write over it, "
                f"or choose another folder"
            )
    samples = make_synthetic(args.n, spatial_dims=args.spatial_dims, size=args.size, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by unetkit synth\n", encoding="utf-8")
    image_suffix, label_suffix = SUFFIX[args.spatial_dims]
    for s in samples:
        write_image(out / "images" / f"{s.stem}{image_suffix}", s.image)
        write_mask(out / "masks" / f"{s.stem}{label_suffix}", s.mask)
        if s.instances is not None:
            write_mask(out / "instances" / f"{s.stem}{label_suffix}", s.instances)
    print(f"wrote {len(samples)} synthetic {args.spatial_dims}D samples to {out}")
    return 0
