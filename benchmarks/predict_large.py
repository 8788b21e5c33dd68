"""Peak memory and time of tiled prediction on one huge grey image (default 8192 x 8192).

Runs ``unetkit.infer.predict_array`` on a synthetic image with a randomly initialised small 2D
model (the weights do not change the cost) and prints one JSON line: wall time, tiles, and the
peak resident memory of the process (``ru_maxrss``), which includes the image itself, the
label map and everything torch allocates.

``--source zarr`` measures the out-of-core path instead (:mod:`unetkit.infer.blockwise`): the
image is first written, band by band, to a chunked Zarr store in a temporary folder, then read
lazily and predicted block by block into a Zarr output store. Run both in one session and
compare ``megapixels_per_s`` (per-pixel speed) and ``peak_rss_mib``:

    PYTHONPATH=src python benchmarks/predict_large.py --size 8192 --padding same --overlap 0.25
    PYTHONPATH=src python benchmarks/predict_large.py --size 32768 --source zarr --overlap 0.25
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unetkit.infer import PredictOptions, plan_tiles, predict_array
from unetkit.model import create_model


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_rows(n: int, lo: int, hi: int) -> np.ndarray:
    """Rows ``[lo, hi)`` of the synthetic ``n x n`` image, float32 raw 8-bit values."""
    y = np.linspace(0, 40, n, dtype=np.float32)
    rows = 127 + 60 * np.sin(y[lo:hi])[:, None] * np.cos(y)[None, :]
    noise = np.random.default_rng(lo).integers(0, 20, size=rows.shape, dtype=np.uint8)
    return (rows + noise).astype(np.float32)


def run_zarr(args: argparse.Namespace, model: torch.nn.Module) -> dict:
    """Write the image to a Zarr store band by band, then predict it block-wise into another."""
    import zarr

    from unetkit.infer.blockwise import plan_blocks, predict_blockwise
    from unetkit.infer.lazy_image import open_lazy

    n = args.size
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        src = zarr.open_array(str(Path(tmp) / "in.zarr"), mode="w", shape=(n, n),
                              chunks=(1024, 1024), dtype=np.uint8)
        for lo in range(0, n, 1024):
            src[lo : lo + 1024] = synthetic_rows(n, lo, min(n, lo + 1024)).clip(0, 255)
        before = rss_mb()
        options = PredictOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size)
        with open_lazy(Path(tmp) / "in.zarr", 2) as image:
            plan = plan_tiles(model.config, image.spatial, args.tile, args.overlap)
            blocks = len(plan_blocks(plan, args.block))
            start = time.perf_counter()
            predict_blockwise(model, image, Path(tmp) / "out.zarr", options=options,
                              block=args.block, probabilities=args.probabilities)
            seconds = time.perf_counter() - start
    return {"source": "zarr", "block": args.block, "blocks": blocks, "tiles": plan.num_tiles,
            "tile_in": list(plan.tile_in), "seconds": round(seconds, 1),
            "rss_before_predict_mib": round(before, 1), "image_mib": round(n * n / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--preset", default="unet2d_small")
    p.add_argument("--padding", choices=("same", "valid"), default="same")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--probabilities", action="store_true")
    p.add_argument("--source", choices=("memory", "zarr"), default="memory")
    p.add_argument("--block", type=int, default=4096, help="block edge for --source zarr")
    p.add_argument("--workdir", default=None, help="where the temporary Zarr stores go")
    p.add_argument("--widths", type=int, nargs="+", help="override the preset's widths")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    widths = tuple(args.widths) if args.widths else None
    model = create_model(args.preset, padding=args.padding, widths=widths).eval()
    n = args.size
    if args.source == "zarr":
        out = run_zarr(args, model)
        out.update(size=n, preset=args.preset, padding=args.padding, threads=args.threads,
                   overlap=args.overlap, probabilities=args.probabilities,
                   megapixels_per_s=round(n * n / 1e6 / out["seconds"], 3),
                   peak_rss_mib=round(rss_mb(), 1))
        print(json.dumps(out))
        return
    # a smooth grey image with texture, as raw 8-bit values in float32 (what read_image gives)
    image = np.concatenate(
        [synthetic_rows(n, lo, min(n, lo + 1024)) for lo in range(0, n, 1024)]
    )[None]
    before = rss_mb()
    plan = plan_tiles(model.config, image.shape[1:], args.tile, args.overlap)
    start = time.perf_counter()
    result = predict_array(
        model,
        image,
        options=PredictOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size),
        keep_probabilities=args.probabilities,
        label_dtype=np.uint8,
    )
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "size": n,
                "preset": args.preset,
                "padding": args.padding,
                "tile_in": list(plan.tile_in),
                "tile_out": list(plan.tile_out),
                "overlap": args.overlap,
                "tiles": plan.num_tiles,
                "threads": args.threads,
                "probabilities": args.probabilities,
                "seconds": round(seconds, 1),
                "seconds_per_tile": round(seconds / plan.num_tiles, 3),
                "megapixels_per_s": round(n * n / 1e6 / seconds, 3),
                "rss_before_predict_mib": round(before, 1),
                "peak_rss_mib": round(rss_mb(), 1),
                "image_mib": round(image.nbytes / 2**20, 1),
                "labels_shape": list(result.labels.shape),
            }
        )
    )


if __name__ == "__main__":
    main()
