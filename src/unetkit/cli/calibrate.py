"""``unetkit calibrate``: store an int8 calibration, and its measured agreement, in a model."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate a model for int8 inference on sample images (stored in the model file)",
        description=(
            "Measure activation ranges for int8 inference on patches of sample images, choose "
            "the activation percentile, whether to equalise channels (per-channel ranges), the "
            "bias correction (the mean output shift of each layer's weight rounding, removed), "
            "and the few layers that must stay in fp32 (each layer alone in fp32, the agreement "
            "it gains per multiply-add it moves to fp32, its readers included; added until int8 "
            "agrees with fp32), then predict held-out images in fp32 and in int8 and record how "
            "well the label maps agree. All of it goes into the model file's metadata ('unetkit "
            "info --model' explains it); 'unetkit predict' then uses int8 by default where the "
            "agreement is at least 0.995 and the CPU has VNNI. Models trained by 'unetkit "
            "train' are calibrated already."
        ),
    )
    p.add_argument("--model", required=True, help="a model file (.safetensors) or a run folder")
    p.add_argument(
        "--data",
        required=True,
        nargs="+",
        metavar="PATH",
        help="images like the ones to predict (files, folders or a dataset folder); the last "
        "quarter (at most 8, at least 1) is held out to measure agreement",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=None,
        help="activation range: this percentile of each map (100 = min/max; default: the "
        "best of 99.99, 99.999 and 100 on the calibration images)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.infer.calibration import describe, int8_calibration
    from unetkit.infer.inputs import find_inputs
    from unetkit.infer.normalization import Normalization
    from unetkit.infer.predictor import as_image
    from unetkit.io.images import read_image
    from unetkit.modelfile import load_with_metadata, resolve_model_path, save

    if args.percentile is not None and not 50.0 <= args.percentile <= 100.0:
        raise ValueError(f"--percentile: expected a value in [50, 100], got {args.percentile}")
    path = resolve_model_path(args.model)
    model, metadata = load_with_metadata(path)
    files = find_inputs(args.data)
    if not files:
        raise ValueError(f"--data: no images found in {' '.join(args.data)}")
    norm = Normalization.from_metadata(metadata.get("normalization"))
    images = []
    for f in files:
        raw = as_image(model, read_image(f, spatial_dims=model.config.spatial_dims))
        images.append(norm.resolve(raw).apply(raw))
    held = min(8, max(1, len(images) // 4)) if len(images) > 1 else 0
    check = images[len(images) - held :] if held else images
    calib = images[: len(images) - held] if held else images
    patch = metadata.get("patch_size") or [256] * model.config.spatial_dims
    entry = int8_calibration(model, calib, check, patch=patch, percentile=args.percentile)
    save(model, path, metadata={**metadata, "int8": entry})
    print(f"calibrated {path} on {len(calib)} image(s), agreement on {len(check)} held out")
    for line in describe(entry):
        print(line)
    return 0
