"""``unetkit export --format bioimageio``: the package, its settings JSON and the summary line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from unetkit.io.atomic import atomic_save_bytes
from unetkit.model import UNet


def run_bioimageio(
    args: argparse.Namespace,
    model: UNet,
    metadata: Mapping[str, Any],
    stamp: Callable[[Path, Path], None],
) -> int:
    """Write the package at ``args.out`` and, beside it, ``<out>.json`` (what was written,
    with the digest that lets a later ``--overwrite`` recognise it); prints one line."""
    from unetkit.export.bioimageio import export_bioimageio
    from unetkit.export.bioimageio_card import run_info

    out = Path(args.out)
    if args.input_size:
        raise ValueError(
            "--input-size: not used by --format bioimageio (the package declares every "
            "allowed size; its test tensors use the training patch)"
        )
    report = export_bioimageio(
        model, out, metadata, authors=args.author or (), run_info=run_info(args.model)
    )
    settings = out.with_name(out.name + ".json")
    summary = {
        "format": "bioimageio",
        "file": out.name,
        "format_version": report.rdf["format_version"],
        "weights": sorted(report.rdf["weights"]),
        "parity": {
            "max_abs_diff": report.max_abs_diff,
            "checked_input_shapes": [list(s) for s in report.checked_shapes],
        },
    }
    atomic_save_bytes(settings, (json.dumps(summary, indent=2) + "\n").encode())
    stamp(settings, out)
    print(
        f"exported {out} (bioimage.io model {report.rdf['format_version']}, torchscript + onnx "
        f"weights); max |export - eager| = {report.max_abs_diff:.3g}; settings in {settings}"
    )
    return 0
