"""``unetkit info``: the architecture as a table (shapes, parameters, FLOPs, memory, sizes)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from unetkit.configtools import apply_overrides, from_dict
from unetkit.model import UNetConfig, list_models, preset_config, summarize


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="print the architecture of a preset or saved model as a table",
        description=(
            "Print per-level shapes, parameters, FLOPs, activation memory, the receptive field "
            "and (valid padding) the nearest valid input sizes. Overrides are UNetConfig "
            "fields, e.g. padding=valid widths=[32,64,128]."
        ),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--preset",
        default="unet2d_small",
        help=f"preset name (default unet2d_small); one of: {', '.join(list_models())}",
    )
    src.add_argument("--model", help="a saved model (.safetensors) or run folder")
    p.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        metavar="N",
        help="spatial input size: one number for every axis or one per axis",
    )
    p.add_argument("--batch-size", type=int, default=1, help="batch size for memory (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="UNetConfig overrides")
    p.set_defaults(run=run)


def resolve_config(preset: str, model: str | None, overrides: list[str]) -> UNetConfig:
    """The config of a preset or saved model with ``key=value`` overrides applied."""
    if model:
        from unetkit.modelfile import load

        base = load(model).config
    else:
        base = preset_config(preset)
    data = apply_overrides(dataclasses.asdict(base), overrides)
    return from_dict(UNetConfig, data)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_models():
            c = preset_config(name)
            print(
                f"{name:28s} {c.spatial_dims}D widths={list(c.widths)} padding={c.padding} "
                f"norm={c.norm}"
            )
        return 0
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    config = resolve_config(args.preset, args.model, args.overrides)
    size = None
    if args.input_size:
        if any(n < 1 for n in args.input_size):
            raise ValueError(f"--input-size: sizes must be positive, got {args.input_size}")
        size = args.input_size[0] if len(args.input_size) == 1 else tuple(args.input_size)
    summary = summarize(config, size, batch=args.batch_size)
    if args.json:
        json.dump(summary.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(summary.format_table())
        if args.model:
            for line in _int8_lines(args.model):
                print(line)
            print(_spacing_line(args.model))
    return 0


def _spacing_line(model: str) -> str:
    """The voxel spacing the saved model was trained at (``unetkit info --model``)."""
    from unetkit.modelfile import load_with_metadata, resolve_model_path

    target = load_with_metadata(resolve_model_path(model))[1].get("target_spacing")
    if not target:
        return "target spacing: none (inputs are predicted on their own grid)"
    return (
        f"target spacing: {' x '.join(f'{v:g}' for v in target)} (inputs of known spacing are "
        f"resampled to it; outputs come back on the input's own grid)"
    )


def _int8_lines(model: str) -> list[str]:
    """What the saved model's int8 calibration chose and measured (``unetkit info --model``)."""
    from unetkit.infer.calibration import describe
    from unetkit.infer.int8 import unsupported_reason
    from unetkit.modelfile import load_with_metadata, resolve_model_path

    net, metadata = load_with_metadata(resolve_model_path(model))
    reason = unsupported_reason(net)
    if reason is not None:
        return [f"int8: not available ({reason}); prediction uses the float path"]
    return describe(metadata.get("int8"))
