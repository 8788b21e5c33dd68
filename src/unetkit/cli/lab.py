"""``unetkit lab``: rerun the experiments behind the design principles (P4-P10)."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetkit.lab import EXPERIMENTS, LabSettings, run_and_write


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="run an experiment that shows why the U-Net works (numbers, figure, paragraph)",
        description=(
            "Run one experiment, or 'all', and write OUT/EXPERIMENT.json (numbers), "
            "OUT/EXPERIMENT.png (figure) and OUT/EXPERIMENT.md (a paragraph); 'all' also writes "
            "OUT/report.md. Experiments: spike, spectrum (P4); gradients (P5); concat-cost (P8); "
            "normalization (P9); memory (P10); alignment (P6, P7); touching (the paper's touching "
            "cells: border weight map and boundary target)."
        ),
    )
    p.add_argument(
        "experiment", metavar="EXPERIMENT", help=f"one of: {', '.join(EXPERIMENTS)}, all"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument(
        "--quick", action="store_true", help="the small version (well under a minute each)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--data",
        type=Path,
        help="folder of real images (with images/) for spectrum and normalization; default "
        "../shared/data/isbi2012-em when present, else synthetic",
    )
    p.add_argument(
        "--device",
        default="cpu",
        metavar="D",
        help="where the experiments train: cpu (default: the measurements are CPU ones), auto, "
        "cuda or cuda:N",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    name = args.experiment
    if name != "all" and name not in EXPERIMENTS:
        raise ValueError(f"EXPERIMENT: unknown {name!r}; one of: {', '.join(EXPERIMENTS)}, all")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a folder")
    if args.data is not None and not (args.data / "images").is_dir():
        raise ValueError(f"--data {args.data}: expected a folder with an images/ subfolder")
    from unetkit.precision import resolve_device

    resolve_device(args.device)  # refused before anything runs
    settings = LabSettings(quick=args.quick, seed=args.seed, data=args.data, device=args.device)
    names = list(EXPERIMENTS) if name == "all" else [name]
    for path in run_and_write(names, args.out, settings):
        print(path)
    return 0
