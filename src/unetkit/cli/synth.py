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
        help="replace the data of an earlier `unetkit synth` in OUT (never other files)",
    )
    p.set_defaults(run=run)


MANIFEST = ".unetkit-synth.json"


def _check_out(out: Path, targets: list[Path], overwrite: bool) -> list[str]:
    """Refuse an ``OUT`` with files ``synth`` did not write (its manifest lists what it wrote);
    returns the listed files of an earlier ``synth`` (replaced with ``--overwrite``)."""
    import json

    if not (out.exists() and any(out.iterdir())):
        return []
    try:
        listed = json.loads((out / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UnetkitError(
            f"{out}: folder exists, is not empty and was not written by `unetkit synth`; "
            f"choose another folder"
        ) from None
    if not overwrite:
        raise UnetkitError(
            f"{out}: holds synthetic data written earlier; choose another folder, or replace it "
            f"with --overwrite (only the files listed in its {MANIFEST} are replaced)"
        )
    foreign = [str(t.relative_to(out)) for t in targets if t.exists()]
    foreign = [f for f in foreign if f not in listed]
    if foreign:
        raise UnetkitError(
            f"{out}: {foreign[0]} was not written by `unetkit synth`; nothing was changed; "
            f"choose another folder"
        )
    return [str(f) for f in listed]


def run(args: argparse.Namespace) -> int:
    import json

    from unetkit.data.synthetic import make_synthetic
    from unetkit.io.atomic import atomic_save_bytes
    from unetkit.io.images import write_image, write_mask

    out = Path(args.out)
    if args.n < 1:
        raise ValueError(f"--n: expected a positive number of images, got {args.n}")
    samples = make_synthetic(args.n, spatial_dims=args.spatial_dims, size=args.size, seed=args.seed)
    image_suffix, label_suffix = SUFFIX[args.spatial_dims]
    plan = []
    for s in samples:
        plan.append((out / "images" / f"{s.stem}{image_suffix}", s.image, write_image))
        plan.append((out / "masks" / f"{s.stem}{label_suffix}", s.mask, write_mask))
        if s.instances is not None:
            plan.append((out / "instances" / f"{s.stem}{label_suffix}", s.instances, write_mask))
    earlier = _check_out(out, [p for p, _, _ in plan], args.overwrite)
    written = [str(p.relative_to(out)) for p, _, _ in plan]
    for rel in earlier:
        if rel not in written:
            (out / rel).unlink(missing_ok=True)  # an earlier synth's file (listed), not rewritten
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_bytes(out / MANIFEST, json.dumps({"files": sorted(set(written))}).encode())
    for path, array, write in plan:
        write(path, array)
    print(f"wrote {len(samples)} synthetic {args.spatial_dims}D samples to {out}")
    return 0
