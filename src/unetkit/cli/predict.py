"""``unetkit predict``: label maps (and probabilities, overlays) for image files of any size."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

from unetkit.cli.instance_options import add_instance_arguments, params_from_args, run_instances
from unetkit.infer.engine import PRECISIONS
from unetkit.infer.files import FileResult, predict_files
from unetkit.infer.predictor import PredictOptions
from unetkit.infer.tiling import Overlap, TileSpec, check_overlap
from unetkit.model import UNet


def parse_tile(values: list[str] | None) -> TileSpec:
    """``--tile``: ``auto``, ``whole``, or one size / one size per spatial axis."""
    if not values:
        return "auto"
    if len(values) == 1 and values[0] in ("auto", "whole"):
        return values[0]  # type: ignore[return-value]
    try:
        sizes = [int(v) for v in values]
    except ValueError:
        raise ValueError(
            f"--tile: expected 'auto', 'whole' or positive integers, got {' '.join(values)}"
        ) from None
    if any(s < 1 for s in sizes):
        raise ValueError(f"--tile: sizes must be positive, got {' '.join(values)}")
    return sizes


def parse_overlap(value: str | float) -> Overlap:
    """``--overlap``: ``auto`` or a fraction in ``[0, 1)`` (errors name the option)."""
    if value == "auto":
        return "auto"
    try:
        return check_overlap(float(value))
    except ValueError:
        raise ValueError(f"--overlap: expected auto or a fraction in [0, 1), got {value}") from None


def add_tiling_arguments(p: argparse.ArgumentParser) -> None:
    """``--tile``, ``--overlap``, ``--tta``, ``--batch-size`` (shared with ``evaluate``)."""
    p.add_argument(
        "--tile",
        nargs="+",
        metavar="N",
        help="tile input size: one number, one per spatial axis, 'auto' (default: 512 in 2D, "
        "128 in 3D, at least the training patch) or 'whole' (no tiling)",
    )
    p.add_argument(
        "--overlap",
        default="auto",
        help="same-padding models: auto (default) overlaps tiles by the model's receptive "
        "field and takes each pixel from the tile where it has all of it (as predicting the "
        "whole image at once); a fraction shares that much of a tile with each neighbour, "
        "blended with Gaussian weights; valid-padding models tile seam-free without it",
    )
    p.add_argument(
        "--tta",
        nargs="?",
        const="on",
        default="auto",
        choices=("auto", "on", "off"),
        help="test-time augmentation: average over flips (and 90-degree rotations in 2D); "
        "'--tta' alone turns it on; auto (default): on with --instances (8 network passes, "
        "DSB 2018 score +0.035 on held-out nuclei) and for restoration models (+0.05 to +0.1 dB "
        "PSNR on EM, more when training was short), off for class maps",
    )
    p.add_argument("--batch-size", type=int, default=4, help="tiles per network call (default 4)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto (default): int8 where the model's stored calibration agrees with fp32 and "
        "the CPU has VNNI, else the fastest float path; or force fp32, bf16 or int8",
    )
    p.add_argument(
        "--device",
        default="auto",
        metavar="D",
        help="auto (default: a CUDA GPU when present), cpu, cuda or cuda:N",
    )


def place_model(model: UNet, spec: str) -> UNet:
    """The loaded model on the ``--device`` it runs on (errors name the option)."""
    from unetkit.precision import resolve_device

    return model.to(resolve_device(spec))


def options_from_args(args: argparse.Namespace) -> PredictOptions:
    """The :class:`PredictOptions` of the tiling arguments, with errors naming the option."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    return PredictOptions(
        tile=parse_tile(args.tile),
        overlap=parse_overlap(args.overlap),
        tta=args.tta == "on",  # "auto" is decided with the model: with_tta_default
        batch_size=args.batch_size,
        precision=args.precision,
    )


def with_tta_default(
    options: PredictOptions, args: argparse.Namespace, metadata: dict
) -> PredictOptions:
    """``--tta auto`` decided for the loaded model: on for ``--instances`` and for restoration
    models, where it was measured to pay (DSB 2018 score +0.035; +0.05 to +0.7 dB PSNR), off
    for class maps; ``on`` and ``off`` are kept as given. TTA averages over the symmetries the
    model was trained with (:func:`unetkit.infer.tta.model_flips`)."""
    from unetkit.infer.tta import model_flips

    options = replace(options, tta_flips=model_flips(metadata))
    if args.tta != "auto":
        return options
    wanted = bool(getattr(args, "instances", False)) or metadata.get("task") == "restore"
    return replace(options, tta=wanted)


def check_precision(model: UNet, metadata: dict, options: PredictOptions) -> None:
    """Fail before any output is written when ``--precision int8`` cannot be honoured, or
    ``--tile`` gives more sizes than the model has spatial axes."""
    from unetkit.infer.engine import inference_network

    d = model.config.spatial_dims
    if isinstance(options.tile, list) and len(options.tile) not in (1, d):
        raise ValueError(
            f"--tile: expected one size or {d} (one per spatial axis of this {d}D model), got "
            f"{' '.join(map(str, options.tile))}"
        )
    if options.precision == "int8":
        try:
            inference_network(model, options.precision, metadata.get("int8"))
        except ValueError as exc:
            raise ValueError(f"--{exc}") from None


def add_large_arguments(p: argparse.ArgumentParser) -> None:
    """``--blockwise`` and ``--block``: images larger than memory, read and written by blocks."""
    p.add_argument(
        "--blockwise",
        action="store_true",
        help="read TIFF inputs lazily and write OUT/<stem>.zarr block by block (OME-Zarr "
        "labels; probabilities inside with --save-probabilities); Zarr inputs always are. "
        "Peak memory depends on the block, not the image; a killed run resumes",
    )
    p.add_argument(
        "--block",
        type=int,
        metavar="N",
        help="block edge in output pixels for block-wise inputs, rounded to whole tile steps "
        "(default: sized with the tile batch to plan at most 640 MiB)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict label maps for images of any size (tiled, bounded memory)",
        description=(
            "Predict label maps for image files or folders (PNG, TIFF, NPY; 1D/2D/3D, any size). "
            "Outputs go to --out with the input's stem and format; probabilities as "
            "probabilities/<stem>.npy, overlays as overlays/<stem>.png. Finished outputs are "
            "skipped on a rerun unless --overwrite."
        ),
    )
    p.add_argument("--model", required=True, help="a model file (.safetensors) or a run folder")
    p.add_argument(
        "--input", required=True, nargs="+", metavar="PATH", help="image files or folders"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_tiling_arguments(p)
    p.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write class probabilities (num_classes, *spatial) as .npy",
    )
    p.add_argument("--overlay", action="store_true", help="also write colour overlay PNGs")
    add_large_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="predict again existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--dtype",
        choices=("float32", "input"),
        default="float32",
        help="restoration models: write float32 TIFF (default; .npy for 1D) in the input's "
        "intensity units, or 'input': the input's own format and pixel type (rounded, clipped)",
    )
    add_instance_arguments(p)
    p.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="S",
        help="voxel spacing of inputs without one (NIfTI headers carry theirs; for an OME-Zarr "
        "it replaces the scale), one number per axis, first axis first; a model trained at a "
        "target spacing resamples them to it and writes outputs on the input's own grid "
        "(labels, --instances ids, restored images; Zarr block by block)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.infer.distributed import context
    from unetkit.modelfile import load_with_metadata

    options = options_from_args(args)
    if args.block is not None and args.block < 1:
        raise ValueError(f"--block: expected a positive number of pixels, got {args.block}")
    model, metadata = load_with_metadata(args.model)
    model = place_model(model, args.device)
    options = with_tta_default(options, args, metadata)
    check_precision(model, metadata, options)
    from unetkit.infer.restore import is_restore_model

    if is_restore_model(metadata):
        return _run_restore(args, model, metadata, options)
    if args.dtype != "float32":
        raise ValueError(
            f"--dtype {args.dtype}: only for restoration models; {args.model} is a segmentation "
            f"model (its label maps keep the input's format)"
        )
    params_from_args(args, metadata)  # a bad instance option fails before any output
    spacing = getattr(args, "spacing", None)
    if spacing is not None and not all(math.isfinite(v) and v > 0 for v in spacing):
        raise ValueError(f"--spacing: expected positive numbers, got {spacing}")
    if spacing is not None and len(spacing) != model.config.spatial_dims:
        raise ValueError(
            f"--spacing: {len(spacing)} numbers, but the model is {model.config.spatial_dims}D; "
            f"give one per spatial axis, first axis first"
        )
    if args.instances:
        return run_instances(args, model, metadata, options)
    ctx = context()  # one process, or this one's share of a torchrun launch

    results = predict_files(
        model,
        metadata,
        args.input,
        args.out,
        options=options,
        save_probabilities=args.save_probabilities,
        overlay=args.overlay,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
        on_result=report_skipped,
        blockwise=args.blockwise,
        block=args.block,
        context=ctx,
        spacing=spacing,
    )
    done = sum(r.status == "predicted" for r in results)
    counts = ctx.gather((done, len(results) - done))
    if ctx.is_main:
        done, skipped = (sum(c[i] for c in counts) for i in (0, 1))
        print(f"predicted {done}, skipped {skipped}; outputs in {args.out}")
    return 0


def report_skipped(result: FileResult) -> None:
    """Say on stderr that an input was skipped because its outputs exist."""
    if result.status == "skipped":
        print(f"skipped {result.input} (outputs exist; --overwrite to redo)", file=sys.stderr)


def _run_restore(
    args: argparse.Namespace, model: UNet, metadata: dict, options: PredictOptions
) -> int:
    """``predict`` with a restoration model: restored images in the input's units."""
    from unetkit.infer.restore import restore_files

    for flag, given in (
        ("--save-probabilities", args.save_probabilities),
        ("--overlay", args.overlay),
    ):
        if given:
            raise ValueError(
                f"{flag}: a restoration model ({args.model}) outputs images, not classes; "
                f"leave {flag} out"
            )

    results = restore_files(
        model,
        metadata,
        args.input,
        args.out,
        options=options,
        output=args.dtype,
        overwrite=args.overwrite,
        on_result=report_skipped,
        spacing=getattr(args, "spacing", None),
    )
    done = sum(r.status == "predicted" for r in results)
    unit = "float32" if args.dtype == "float32" else "the input's pixel type"
    print(f"restored {done}, skipped {len(results) - done} ({unit}); outputs in {args.out}")
    return 0
