"""``unetkit export``: ONNX or TorchScript, checked against eager PyTorch before success."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError
from unetkit.export import export_model
from unetkit.io.atomic import atomic_save_bytes

STAMP = "export_sha256"
"""Key of the settings JSON beside an export: the SHA-256 of the exported file. An existing
``--out`` is an earlier export (which ``--overwrite`` may replace) only when its JSON names it
and this digest matches its bytes."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _settings_of(path: Path) -> dict[str, Any] | None:
    """The settings JSON beside ``path`` if it is one that unetkit export wrote for it."""
    sidecar = path.with_name(path.name + ".json")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("file") == path.name and STAMP in data:
        return data
    return None


def check_target(out: Path, *, overwrite: bool) -> None:
    """Refuse ``--out`` unless it is new, or an earlier export and ``overwrite`` is given.

    ``unetkit export`` never replaces a file it did not write: the input model, a run's files,
    anything else. The same holds for the settings JSON beside the export (``<FILE>.json``).
    """
    sidecar = out.with_name(out.name + ".json")
    if out.is_symlink() and not out.exists():
        raise UnetkitError(
            f"--out {out}: is a dangling symlink to {out.readlink()}; choose another --out file"
        )
    if out.exists() and not out.is_dir():
        settings = _settings_of(out)
        if settings is None or settings[STAMP] != _sha256(out):
            raise UnetkitError(
                f"--out {out}: exists and is not an export written by unetkit (or was changed "
                f"since); unetkit export never replaces it, --overwrite or not. Choose another "
                f"--out file"
            )
        if not overwrite:
            raise UnetkitError(
                f"--out {out}: holds an earlier unetkit export; use --overwrite to replace it, or "
                f"choose another --out file"
            )
    elif (sidecar.exists() or sidecar.is_symlink()) and not (overwrite and _settings_of(out)):
        raise UnetkitError(
            f"--out {out}: the settings file {sidecar} that would be written beside it exists "
            f"and is not the settings of an earlier unetkit export (with --overwrite, those may "
            f"be replaced); choose another --out file"
        )


def _stamp(settings_path: Path, exported: Path) -> None:
    """Record the exported file's digest in its settings JSON (see :data:`STAMP`)."""
    data = json.loads(settings_path.read_text(encoding="utf-8"))
    data[STAMP] = _sha256(exported)
    atomic_save_bytes(settings_path, (json.dumps(data, indent=2) + "\n").encode())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX, TorchScript or a bioimage.io package (parity-checked)",
        description=(
            "Export a trained model. The export is run on random inputs and compared with eager "
            "PyTorch (ONNX through onnxruntime) before anything is written; the normalisation "
            "and tiling needed to use it are written beside it as <FILE>.json. Same-padding "
            "models get dynamic batch and spatial axes (sizes multiple of the downsampling "
            "factor); valid-padding models a dynamic batch and a fixed input size."
        ),
    )
    p.add_argument("--model", required=True, help="a model file (.safetensors) or a run folder")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript", "bioimageio"))
    p.add_argument("--out", required=True, metavar="FILE", help="the exported file")
    p.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        metavar="N",
        help="spatial size to trace and check (default: the inference tile size); the fixed "
        "input size of a valid-padding export",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export at --out (never a file unetkit export did not write)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        metavar="D",
        help="where the parity check runs eager PyTorch and TorchScript: cpu (default), auto, "
        "cuda or cuda:N (the exported file is the same)",
    )
    p.add_argument(
        "--author",
        action="append",
        metavar="NAME",
        help="bioimageio: an author of the package (repeat for several)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.modelfile import load_with_metadata

    if args.input_size and any(n < 1 for n in args.input_size):
        raise ValueError(f"--input-size: sizes must be positive, got {args.input_size}")
    out = Path(args.out)
    check_target(out, overwrite=args.overwrite)
    model, metadata = load_with_metadata(args.model)
    if args.format == "bioimageio":
        from unetkit.export.bioimageio_cli import run_bioimageio

        return run_bioimageio(args, model, metadata, _stamp)
    report = export_model(
        model,
        args.out,
        args.format,
        metadata,
        input_size=args.input_size,
        device=args.device,
    )
    _stamp(report.settings_path, report.path)
    shapes = ", ".join("x".join(str(n) for n in s) for s in report.checked_shapes)
    print(
        f"exported {report.path} ({args.format}); max |export - eager| = "
        f"{report.max_abs_diff:.3g} on inputs {shapes}; settings in {report.settings_path}"
    )
    return 0
