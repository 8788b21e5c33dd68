"""``unetkit evaluate``: Dice, IoU, HD95, pixel error and Rand error as a table, JSON, CSV."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from unetkit.cli.predict import (
    add_tiling_arguments,
    check_precision,
    options_from_args,
    place_model,
    with_tta_default,
)
from unetkit.infer.evaluation import (
    MAX_CLASSES,
    BoundarySpec,
    Evaluation,
    evaluate_folders,
    evaluate_model,
)
from unetkit.infer.predictor import PredictOptions
from unetkit.infer.restore_evaluation import CSV_HEADER as RESTORE_CSV_HEADER
from unetkit.io.atomic import atomic_save_bytes
from unetkit.model import UNet


def parse_boundary(text: str) -> BoundarySpec:
    """``--boundary-class``: ``auto``, ``none`` or a class index."""
    if text == "auto":
        return "auto"
    if text == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'none' or a class index, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a class index >= 0, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on a dataset, or predictions against truth masks",
        description=(
            "Per image and overall, per class and mean over foreground classes: Dice, IoU, HD95 "
            "(pixels), pixel error, and the ISBI 2012 adapted Rand error for binary boundary "
            "tasks. Either --model RUN --data DIR (predict, then evaluate) or --pred DIR "
            "--truth DIR (masks paired by file stem)."
        ),
    )
    p.add_argument("--model", help="a model file or run folder (with --data)")
    p.add_argument("--data", metavar="DIR", help="a dataset folder with images/ and masks/")
    p.add_argument("--pred", metavar="DIR", help="a folder of predicted label maps")
    p.add_argument("--truth", metavar="DIR", help="a folder of truth masks (or a dataset)")
    p.add_argument("--json", metavar="FILE", help="write {mean, per_class, per_image} as JSON")
    p.add_argument("--csv", metavar="FILE", help="write one row per image and class as CSV")
    p.add_argument("--num-classes", type=int, help="classes (default: the model's, or inferred)")
    p.add_argument("--ignore-index", type=int, help="truth label excluded from every metric (void)")
    p.add_argument(
        "--boundary-class",
        type=parse_boundary,
        default="auto",
        metavar="C|auto|none",
        help="class separating segments for the Rand error (EM membranes: 1). 'auto' (default) "
        "uses class 1 when there are two classes and class 1 is thin (median half-width <= 3 "
        "px); 'none' skips it",
    )
    add_tiling_arguments(p)
    p.add_argument(
        "--data-range",
        type=float,
        metavar="R",
        help="restoration models: the data range of PSNR and SSIM (default: each target's "
        "max - min)",
    )
    p.add_argument(
        "--instances",
        action="store_true",
        help="score objects instead of classes, against instances/ truth: DSB 2018 score, "
        "F1/precision/recall at IoU 0.5, panoptic quality, SEG, merges and splits",
    )
    p.add_argument(
        "--instances-fallback",
        choices=("none", "components"),
        default="none",
        help="with --model: accept a model without an instance target (connected components "
        "of its class map)",
    )
    g = p.add_argument_group(
        "diffusion models (--model alone): Fréchet distance to held-out digits, conditional "
        "accuracy and nearest-training-image distance of generated samples"
    )
    g.add_argument("--samples", type=int, default=500, help="images to generate (default 500)")
    g.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    g.add_argument("--steps", type=int, help="sampling steps (ddpm: all T, ddim: 50)")
    g.add_argument("--guidance", type=float, default=1.0, help="guidance scale (1 = none)")
    g.add_argument("--seed", type=int, default=0, help="seed of the samples")
    p.set_defaults(run=run)


CSV_HEADER = "image,class,dice,iou,hd95,pixel_error,rand_error"
#: the first columns of an ``--instances`` CSV (more follow: see ``metrics.instance_report``)
INSTANCE_CSV_PREFIX = "image,dsb,f1,precision,recall"


def _earlier_report(path: Path, kind: str) -> bool:
    """Whether ``path`` is a report that ``unetkit evaluate`` wrote (JSON or CSV)."""
    try:
        with path.open(encoding="utf-8") as fh:
            if kind == "--csv":
                head = fh.readline().strip()
                return head in (CSV_HEADER, RESTORE_CSV_HEADER) or head.startswith(
                    INSTANCE_CSV_PREFIX + ","
                )
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (
        {"mean", "per_class", "per_image"} <= set(data) or {"overall", "per_image"} <= set(data)
    )


def check_report_targets(args: argparse.Namespace) -> None:
    """``--json``/``--csv`` must name a file in an existing folder that is new or an earlier
    report of ``unetkit evaluate``: never an image, a mask or any other file of the user's."""
    for option, value in (("--json", args.json), ("--csv", args.csv)):
        if not value:
            continue
        target = Path(value)
        if not target.parent.is_dir():
            raise ValueError(f"{option}: folder {target.parent} does not exist")
        if target.is_dir():
            raise ValueError(f"{option} {target}: is a folder; name the report file")
        if (target.exists() or target.is_symlink()) and not _earlier_report(target, option):
            raise ValueError(
                f"{option} {target}: exists and is not a report of unetkit evaluate; unetkit "
                f"never replaces it. Choose another file name"
            )


def _write_outputs(evaluation: Evaluation, json_path: str | None, csv_path: str | None) -> None:
    if json_path:
        text = json.dumps(evaluation.to_json_dict(), indent=2) + "\n"
        atomic_save_bytes(Path(json_path), text.encode())
    if csv_path:
        target = Path(csv_path)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
            scratch = Path(tmp) / target.name
            evaluation.report.to_csv(scratch)
            atomic_save_bytes(target, scratch.read_bytes())


def run(args: argparse.Namespace) -> int:
    if args.model and not (args.data or args.pred or args.truth) and _is_diffusion(args.model):
        return _run_diffusion(args)
    model_mode = args.model is not None or args.data is not None
    folder_mode = args.pred is not None or args.truth is not None
    if model_mode == folder_mode:
        raise ValueError("evaluate: give either --model RUN --data DIR or --pred DIR --truth DIR")
    if model_mode and not (args.model and args.data):
        raise ValueError("evaluate: --model and --data go together")
    if folder_mode and not (args.pred and args.truth):
        raise ValueError("evaluate: --pred and --truth go together")
    if args.num_classes is not None and not 1 <= args.num_classes <= MAX_CLASSES:
        raise ValueError(
            f"--num-classes: expected an integer in 1..{MAX_CLASSES}, got {args.num_classes}"
        )
    check_report_targets(args)
    if args.instances:
        return run_instances(args, model_mode)

    from unetkit.data.declaration import declaration_of

    declared = declaration_of(args.data or args.truth)  # dataset.yaml: names, ignore label
    if args.ignore_index is None and declared is not None:
        args.ignore_index = declared.ignore_index
    names = declared.class_names if declared is not None else None
    if model_mode:
        from unetkit.modelfile import load_with_metadata

        options = options_from_args(args)
        model, metadata = load_with_metadata(args.model)
        model = place_model(model, args.device)
        options = with_tta_default(options, args, metadata)  # scored as predict writes
        check_precision(model, metadata, options)
        if metadata.get("task") == "restore":
            return _run_restore(args, model, metadata, options)
        if args.data_range is not None:
            raise ValueError(f"--data-range: only for restoration models; {args.model} segments")
        evaluation = evaluate_model(
            model,
            metadata,
            args.data,
            options=options,
            num_classes=args.num_classes,
            ignore_index=args.ignore_index,
            boundary=args.boundary_class,
            progress=sys.stderr.isatty(),
        )
        names = names or tuple(metadata.get("class_names") or ()) or None
    else:
        evaluation = evaluate_folders(
            args.pred,
            args.truth,
            num_classes=args.num_classes,
            ignore_index=args.ignore_index,
            boundary=args.boundary_class,
        )
    if names:
        named = dataclasses.replace(evaluation.report, class_names=tuple(names))
        evaluation = dataclasses.replace(evaluation, report=named)
    print(evaluation.report.format_table())
    print(f"rand error: {evaluation.boundary_reason}")
    _write_outputs(evaluation, args.json, args.csv)
    return 0


def _run_restore(
    args: argparse.Namespace, model: UNet, metadata: dict, options: PredictOptions
) -> int:
    """``evaluate`` of a restoration model: PSNR and SSIM against ``targets/``."""
    from unetkit.infer.restore_evaluation import evaluate_restore_model

    if args.data_range is not None and not args.data_range > 0:
        raise ValueError(f"--data-range: expected a positive number, got {args.data_range}")
    evaluation = evaluate_restore_model(
        model,
        metadata,
        args.data,
        options=options,
        data_range=args.data_range,
    )
    print(evaluation.format_table())
    if args.json:
        text = json.dumps(evaluation.to_json_dict(), indent=2) + "\n"
        atomic_save_bytes(Path(args.json), text.encode())
    if args.csv:
        atomic_save_bytes(Path(args.csv), evaluation.to_csv_text().encode())


def run_instances(args: argparse.Namespace, model_mode: bool) -> int:
    """``evaluate --instances``: the instance scores as a table, JSON and CSV."""
    from unetkit.infer.instance_evaluation import (
        evaluate_instance_folders,
        evaluate_instance_model,
    )

    if model_mode:
        from unetkit.infer.instance_files import check_instance_model
        from unetkit.modelfile import load_with_metadata

        options = options_from_args(args)
        model, metadata = load_with_metadata(args.model)
        options = with_tta_default(options, args, metadata)
        check_precision(model, metadata, options)
        check_instance_model(metadata, str(args.model), args.instances_fallback)
        report = evaluate_instance_model(
            model, metadata, args.data, options=options, fallback=args.instances_fallback
        )
    else:
        report = evaluate_instance_folders(
            args.pred, args.truth, warn=lambda m: print(f"warning: {m}", file=sys.stderr)
        )
    print(report.format_table())
    if args.json:
        text = json.dumps(report.to_json_dict(), indent=2) + "\n"
        atomic_save_bytes(Path(args.json), text.encode())
    if args.csv:
        atomic_save_bytes(Path(args.csv), report.csv_text().encode())
    return 0


def _is_diffusion(model: str) -> bool:
    from unetkit.modelfile import load_with_metadata

    return load_with_metadata(model)[1].get("task") == "diffusion"


def _run_diffusion(args: argparse.Namespace) -> int:
    """``evaluate --model RUN`` of a diffusion model (see :mod:`unetkit.diffusion.evaluation`)."""
    from tqdm import tqdm

    from unetkit.diffusion.evaluation import evaluate_denoiser

    for name, value in (("--samples", args.samples), ("--steps", args.steps)):
        if value is not None and value < 2:
            raise ValueError(f"{name} {value}: expected an integer >= 2")
    if args.csv:
        raise ValueError("--csv: a diffusion model's evaluation has no per-image table; use --json")
    with tqdm(desc="sampling", unit="step", disable=not sys.stderr.isatty()) as bar:
        quality = evaluate_denoiser(
            args.model,
            n=args.samples,
            sampler=args.sampler,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            progress=bar.update,
        )
    print("\n".join(quality.lines()))
    if args.json:
        text = json.dumps({"mean": quality.to_json(), "per_class": {}, "per_image": []}, indent=2)
        atomic_save_bytes(Path(args.json), (text + "\n").encode())
    return 0
