"""The whole prediction path on many small images, stage by stage, against the network alone.

One run, one process, same model and images for every row, so the ratios hold on a busy machine:

* stages of ``unetkit predict`` per image: decode (``read_image``), normalise, network,
  finalise (argmax), encode + write (``write_mask``);
* ``network-only``: the inference network on batches of ``--batch`` images (its best case);
* ``unetkit.predict``: the public in-memory API, image by image;
* ``unetkit.predict_images``: the public in-memory API, all images in one call (equal shapes
  share network calls of ``--batch``);
* ``predict_files``: the command line's path, files in and out (decode and encode included);
* ``monai-fp32``: MONAI BasicUNet, same architecture (``impls.monai_model``), eager fp32,
  batches of ``--batch``.

``--precision int8`` (the default) calibrates the randomly initialised model on the benchmark's
own images (:func:`unetkit.infer.int8.calibrate`; the weights do not change the cost) and runs
every unetkit row in int8, as ``auto`` does for a calibrated model that agrees with fp32;
``fp32`` runs the float path. The JSON also gives the network's share of the CPU's measured
int8 (or fp32) 3x3-convolution peak (``measure.int8_conv_peak``), which bounds what any
implementation of this network can reach against MONAI.

    PYTHONPATH=src python benchmarks/predict_path.py --images 32 --size 256 --width 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    from impls import monai_model, unetkit_config
    from measure import conv_peak, forward_flops, int8_conv_peak

    import unetkit
    from unetkit.infer.engine import inference_network, run_network
    from unetkit.infer.files import predict_files
    from unetkit.infer.int8 import calibrate
    from unetkit.infer.normalization import Normalization
    from unetkit.infer.predictor import PredictOptions
    from unetkit.io.images import read_image, write_image, write_mask
    from unetkit.model import UNet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--levels", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet(unetkit_config(2, args.width, args.levels)).eval()
    monai = monai_model(2, args.width, args.levels).eval()
    n, s = args.images, args.size
    rng = np.random.default_rng(0)
    raw = [
        (np.cumsum(rng.normal(size=(s, s)), axis=1) * 4 + 128).clip(0, 255).astype(np.uint8)[None]
        for _ in range(n)
    ]
    out: dict[str, object] = {"images": n, "size": s, "width": args.width,
                              "levels": args.levels, "threads": args.threads,
                              "precision": args.precision}
    meta: dict[str, object] = {}
    if args.precision == "int8":
        calib = [torch.from_numpy(np.stack(raw[i : i + 4]).astype(np.float32) / 255.0)
                 for i in range(0, min(n, 16), 4)]
        ranges = calibrate(model, [(c - c.mean()) / c.std() for c in calib])
        meta = {"int8": {"ranges": {k: list(v) for k, v in ranges.items()}}}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        for i, r in enumerate(raw):
            write_image(src / f"im{i:04d}.png", r)
        files = sorted(src.glob("*.png"))
        net = inference_network(model, args.precision, meta.get("int8"))
        x1 = torch.from_numpy(raw[0][None].astype(np.float32))
        run_network(net, x1, fast=False)  # warm-up: build the optimised network
        stages: dict[str, float] = {}
        images = []
        stages["decode"] = timed(
            lambda: images.extend(read_image(f, spatial_dims=2) for f in files)
        )
        normed = []
        stages["normalise"] = timed(
            lambda: normed.extend(Normalization().resolve(im).apply(im) for im in images)
        )
        logits = []
        stages["network_batch1"] = timed(
            lambda: logits.extend(run_network(net, torch.from_numpy(x[None]), fast=False)
                                  for x in normed)
        )
        labels = []
        stages["finalise"] = timed(lambda: labels.extend(y[0].argmax(0).numpy() for y in logits))
        dst = Path(tmp) / "stages"
        stages["encode_write"] = timed(
            lambda: [write_mask(dst / f.name, lab.astype(np.uint8)) for f, lab in zip(
                files, labels, strict=True)]
        )
        out["stage_seconds_per_image"] = {k: round(v / n, 4) for k, v in stages.items()}
        batch = torch.from_numpy(np.stack(normed[: args.batch]))
        reps = max(1, n // args.batch)
        t_net = timed(lambda: [run_network(net, batch, fast=False) for _ in range(reps)])
        with torch.inference_mode():
            monai(batch)
            t_monai = timed(lambda: [monai(batch) for _ in range(reps)])
        t_api = timed(lambda: [unetkit.predict(model, im, metadata=meta,
                                               precision=args.precision) for im in images])
        t_many = timed(lambda: unetkit.predict_images(model, images, metadata=meta,
                                                      precision=args.precision,
                                                      batch_size=args.batch))
        files_options = PredictOptions(precision=args.precision, batch_size=args.batch)
        t_files = timed(lambda: predict_files(model, meta, [src], Path(tmp) / "out",
                                              options=files_options))
    rate = {
        "network_only": reps * args.batch / t_net,
        "monai_fp32": reps * args.batch / t_monai,
        "unetkit_predict": n / t_api,
        "unetkit_predict_images": n / t_many,
        "predict_files": n / t_files,
    }
    out["images_per_s"] = {k: round(v, 2) for k, v in rate.items()}
    out["ratios"] = {
        "predict_vs_network_only": round(rate["unetkit_predict"] / rate["network_only"], 3),
        "files_vs_network_only": round(rate["predict_files"] / rate["network_only"], 3),
        "many_vs_network_only": round(
            rate["unetkit_predict_images"] / rate["network_only"], 3
        ),
        "predict_vs_monai_fp32": round(rate["unetkit_predict"] / rate["monai_fp32"], 3),
        "files_vs_monai_fp32": round(rate["predict_files"] / rate["monai_fp32"], 3),
    }
    flops = forward_flops(model, (1, 1, s, s))
    peak = int8_conv_peak() if args.precision == "int8" else conv_peak(torch.float32)["gflops"]
    out["gop_per_image"] = round(flops / 1e9, 3)
    out["conv_peak_gops"] = round(peak, 1) if peak else None
    out["network_share_of_peak"] = (
        round(flops / 1e9 * rate["network_only"] / peak, 3) if peak else None
    )
    out["monai_share_of_fp32_peak"] = round(
        flops / 1e9 * rate["monai_fp32"] / conv_peak(torch.float32)["gflops"], 3
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
