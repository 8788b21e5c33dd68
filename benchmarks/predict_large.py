"""Peak memory and time of tiled prediction on one huge grey image (default 8192 x 8192).

Runs ``unetkit.infer.predict_array`` on a synthetic image with a randomly initialised small 2D
model (the weights do not change the cost) and prints one JSON line: wall time, tiles, and the
peak resident memory of the process (``ru_maxrss``), which includes the image itself, the
label map and everything torch allocates.

    PYTHONPATH=src python benchmarks/predict_large.py --size 8192 --padding same --overlap 0.25
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from unetkit.infer import PredictOptions, plan_tiles, predict_array
from unetkit.model import create_model


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.preset, padding=args.padding).eval()
    n = args.size
    # a smooth grey image with texture, as raw 8-bit values in float32 (what read_image gives)
    y = np.linspace(0, 40, n, dtype=np.float32)
    image = (127 + 60 * np.sin(y)[:, None] * np.cos(y)[None, :]).astype(np.float32)[None]
    image += np.random.default_rng(0).integers(0, 20, size=image.shape, dtype=np.uint8)
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
                "rss_before_predict_mib": round(before, 1),
                "peak_rss_mib": round(rss_mb(), 1),
                "image_mib": round(image.nbytes / 2**20, 1),
                "labels_shape": list(result.labels.shape),
            }
        )
    )


if __name__ == "__main__":
    main()
