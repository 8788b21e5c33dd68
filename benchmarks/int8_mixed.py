"""Mixed int8/fp32 on trained models: agreement before (all-int8) and after (the calibration's
fp32 layers) on held-out images, what ``--precision auto`` picks, and the speed of int8 against
fp32 through the public ``unetkit.predict``, measured in the same run.

Each ``--pair RUN:DIR`` names a trained run folder (calibrated by ``unetkit train`` or
``unetkit calibrate``) and a folder of held-out images (``DIR/images``, or ``DIR`` itself) that
neither training nor calibration saw. Prints one JSON line per model and a Markdown table::

    PYTHONPATH=src python benchmarks/int8_mixed.py --threads 2 \\
        --pair runs/m_isbi2012-em:runs/data/isbi2012-em/test

Agreement is the mean over images of the mean Dice over foreground classes between int8 and
fp32 label maps (:func:`unetkit.infer.calibration.foreground_agreement`, what the calibration
stores). Speed: every held-out image predicted once to warm up, then ``--repeat`` times; the
median total seconds per precision. ``--many`` times ``unetkit.predict_images`` (all images in
one call, equal sizes sharing network calls of ``--batch``, as the command line predicts a
folder) instead of ``unetkit.predict`` image by image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import unetkit
from unetkit.infer import engine
from unetkit.infer.calibration import foreground_agreement
from unetkit.infer.calibration_entry import Int8Calibration
from unetkit.infer.files import find_inputs
from unetkit.infer.int8 import Int8UNet, has_vnni
from unetkit.io.images import read_image
from unetkit.modelfile import load_with_metadata, resolve_model_path


def _timed(
    model: Any, images: list[np.ndarray], meta: dict, precision: str, repeat: int, batch: int
):
    """Labels and the median seconds of ``repeat`` passes; ``batch`` > 0: ``predict_images``
    with that network batch, else ``unetkit.predict`` image by image."""

    def once() -> list[np.ndarray]:
        if batch:
            return unetkit.predict_images(
                model, images, metadata=meta, precision=precision, batch_size=batch
            )
        return [unetkit.predict(model, im, metadata=meta, precision=precision) for im in images]

    labels = once()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return labels, statistics.median(times)


def measure(run: str, held_out: str, repeat: int, batch: int = 0) -> dict[str, Any]:
    model, meta = load_with_metadata(resolve_model_path(run))
    entry = meta.get("int8")
    calibration = Int8Calibration.from_metadata(entry)
    if calibration is None:
        raise SystemExit(f"{run}: no int8 calibration; run 'unetkit calibrate' first")
    folder = Path(held_out) / "images" if (Path(held_out) / "images").is_dir() else held_out
    files = find_inputs([str(folder)])
    images = [read_image(f, spatial_dims=model.config.spatial_dims) for f in files]
    k = int(model.config.out_channels)
    classes = 2 if k == 1 else k
    all_int8 = {**meta, "int8": {**entry, "fp32_layers": []}}
    ref, t_fp32 = _timed(model, images, meta, "fp32", repeat, batch)
    mixed, t_int8 = _timed(model, images, meta, "int8", repeat, batch)
    before, t_all = _timed(model, images, all_int8, "int8", repeat, batch)
    auto = engine.inference_network(model, "auto", entry)
    return {
        "run": run,
        "images": len(images),
        "size": list(images[0].shape[-model.config.spatial_dims :]),
        "widths": list(model.config.widths),
        "fp32_layers": list(calibration.fp32_layers),
        "layers": len(calibration.search.get("sensitivity", {})) or None,
        "percentile": calibration.percentile,
        "stored_agreement": calibration.agreement,
        "stored_all_int8": calibration.all_int8_agreement,
        "agreement_all_int8": foreground_agreement(before, ref, classes),
        "agreement_mixed": foreground_agreement(mixed, ref, classes),
        "pixels_agreeing_mixed": float(
            np.mean([np.mean(a == b) for a, b in zip(mixed, ref, strict=True)])
        ),
        "auto_picks": "int8" if isinstance(auto, Int8UNet) else "fp32",
        "seconds_fp32": t_fp32,
        "seconds_int8_mixed": t_int8,
        "seconds_int8_all": t_all,
        "speedup_mixed": t_fp32 / t_int8,
        "speedup_all": t_fp32 / t_all,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", action="append", required=True, metavar="RUN:DIR")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--many", action="store_true", help="time unetkit.predict_images")
    p.add_argument("--batch", type=int, default=4, help="network batch with --many")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} threads, VNNI: {has_vnni()}")
    rows = []
    for pair in args.pair:
        run, _, held_out = pair.partition(":")
        row = measure(run, held_out, args.repeat, args.batch if args.many else 0)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print()
    print(
        "| model | held-out images | fp32 layers | agreement all-int8 | agreement mixed | "
        "auto picks | fp32 s | int8 s | int8 speed-up (all-int8) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {Path(r['run']).name} | {r['images']} x {r['size']} | {len(r['fp32_layers'])}"
            f"/{r['layers'] or '-'} | {r['agreement_all_int8']:.4f} | "
            f"{r['agreement_mixed']:.4f} | {r['auto_picks']} | {r['seconds_fp32']:.2f} | "
            f"{r['seconds_int8_mixed']:.2f} | {r['speedup_mixed']:.2f}x "
            f"({r['speedup_all']:.2f}x) |"
        )


if __name__ == "__main__":
    main()
