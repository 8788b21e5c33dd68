"""``unetkit export``: ONNX or TorchScript, checked against eager PyTorch before success."""

from __future__ import annotations

import argparse

from unetkit.export import export_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX or TorchScript (checked against PyTorch)",
        description=(
            "Export a trained model. The export is run on random inputs and compared with eager "
            "PyTorch (ONNX through onnxruntime) before anything is written; the normalisation "
            "and tiling needed to use it are written beside it as <FILE>.json. Same-padding "
            "models get dynamic batch and spatial axes (sizes multiple of the downsampling "
            "factor); valid-padding models a dynamic batch and a fixed input size."
        ),
    )
    p.add_argument("--model", required=True, help="a model file (.safetensors) or a run folder")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--out", required=True, metavar="FILE", help="the exported file")
    p.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        metavar="N",
        help="spatial size to trace and check (default: the inference tile size); the fixed "
        "input size of a valid-padding export",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.modelfile import load_with_metadata

    if args.input_size and any(n < 1 for n in args.input_size):
        raise ValueError(f"--input-size: sizes must be positive, got {args.input_size}")
    model, metadata = load_with_metadata(args.model)
    report = export_model(
        model,
        args.out,
        args.format,
        metadata,
        input_size=args.input_size,
    )
    shapes = ", ".join("x".join(str(n) for n in s) for s in report.checked_shapes)
    print(
        f"exported {report.path} ({args.format}); max |export - eager| = "
        f"{report.max_abs_diff:.3g} on inputs {shapes}; settings in {report.settings_path}"
    )
    return 0
