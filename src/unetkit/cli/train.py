"""``unetkit train``: train a U-Net on a dataset folder, or on built-in synthetic data.

With no options it trains on synthetic cells within two minutes. With ``--data DIR
--max-minutes M`` and nothing else, the recipe (patch, batch, widths, depth, loss,
augmentation, normalisation, schedule) is chosen from the data and the budget. Works unchanged
under ``torchrun --nproc-per-node N -m unetkit train ...``. The run itself is
:func:`unetkit.workflow.fit`, which Python callers use directly; this module only parses.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from unetkit.configtools import apply_overrides, parse_override, to_dict
from unetkit.errors import UnetkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a U-Net (synthetic data when no --data is given)",
        description=(
            "Train a U-Net and write a run folder (config.yaml, model.safetensors, last/, "
            "metrics.csv, progress.png, overlays/). Settings not given are chosen from the data "
            "and the time budget. KEY=VALUE overrides use the config.yaml names, e.g. "
            "train.lr=0.001 model.widths=[16,32,64,128] data.ignore_index=0. Under torchrun, "
            "--batch-size is per process."
        ),
    )
    p.add_argument("--data", metavar="DIR", help="dataset folder with images/ and masks/")
    p.add_argument("--out", metavar="RUN", help="run folder to create (default runs/<time>)")
    p.add_argument("--preset", metavar="NAME", help="start the model from a named preset")
    p.add_argument("--config", metavar="FILE.yaml", help="a run config (e.g. a config.yaml)")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs (fixes the schedule length)")
    p.add_argument("--max-minutes", type=float, metavar="M", help="wall-clock budget")
    p.add_argument("--batch-size", type=int, metavar="B", help="patches per step per process")
    p.add_argument("--patch-size", type=int, nargs="+", metavar="N", help="patch size")
    p.add_argument("--loss", choices=("ce", "dice", "dice_ce", "focal", "weighted_ce"))
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            "replace the unetkit run in --out: only the files its .unetkit-run.json lists are "
            "deleted, after the new run passed its checks; a folder with other files is refused"
        ),
    )
    p.add_argument("--seed", type=int, help="seed of weights, patches and augmentation")
    p.add_argument("--deterministic", action="store_true", help="reproducible to the bit")
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="E",
        help="pause after epoch E (continue later with --resume)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(run=run)


def _explicit_options(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted config keys set by named options."""
    values: dict[str, Any] = {}
    if args.data is not None:
        values["data.path"] = args.data
    if args.epochs is not None:
        values["train.epochs"] = args.epochs
    if args.max_minutes is not None:
        values["train.max_minutes"] = args.max_minutes
    if args.batch_size is not None:
        values["train.batch_size"] = args.batch_size
    if args.patch_size is not None:
        values["data.patch_size"] = list(args.patch_size)
    if args.loss is not None:
        values["train.loss"] = args.loss
    if args.seed is not None:
        values["train.seed"] = args.seed
    if args.deterministic:
        values["train.deterministic"] = True
    return values


def _check_positive(args: argparse.Namespace) -> None:
    for name in ("epochs", "batch_size", "stop_after"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(
                f"--{name.replace('_', '-')}: expected a positive integer, got {value}"
            )
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes: expected a positive number, got {args.max_minutes}")
    if args.patch_size is not None and any(n < 8 for n in args.patch_size):
        raise ValueError(f"--patch-size: sizes must be at least 8, got {args.patch_size}")


def build_config(args: argparse.Namespace) -> tuple[Any, set[str]]:
    """The requested :class:`RunConfig` (before the recipe) and the keys the user set."""
    from unetkit.config import RunConfig, _merge, run_config_from_dict
    from unetkit.configtools import load_yaml
    from unetkit.model import preset_config
    from unetkit.workflow import flat_keys

    base: dict[str, Any] = to_dict(RunConfig())
    explicit: set[str] = set()
    if args.config:
        if not Path(args.config).is_file():
            raise UnetkitError(f"--config: {args.config}: no such file")
        data = load_yaml(args.config)
        base = _merge(base, data)
        explicit |= flat_keys(data)
    if args.preset:
        base["model"] = to_dict(preset_config(args.preset))
        explicit |= {f"model.{f.name}" for f in dataclasses.fields(preset_config(args.preset))}
    options = _explicit_options(args)
    for key, value in options.items():
        section, name = key.split(".", 1)
        base.setdefault(section, {})[name] = value
    explicit |= set(options)
    for text in args.overrides:
        path, _ = parse_override(text)
        explicit.add(".".join(path))
    data = apply_overrides(base, list(args.overrides))
    source = args.config or "command line"
    return run_config_from_dict(data, source), explicit


def process_age() -> float:
    """Seconds since this process started (Linux; 0 elsewhere), so imports count in budgets."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def run(args: argparse.Namespace) -> int:
    """Parse, then one :func:`unetkit.workflow.fit` (the same run a Python caller gets)."""
    from unetkit.train.distributed import init_from_env, restart_count, shutdown
    from unetkit.workflow import fit

    started = time.monotonic() - process_age()  # --max-minutes counts from the command's start
    _check_positive(args)
    info = init_from_env()
    quiet = args.quiet
    say = print if (info.is_main and not quiet) else (lambda *_a, **_k: None)
    try:
        if args.resume is not None and args.overwrite:
            raise UnetkitError("--resume and --overwrite: choose one (continue or replace)")
        resume_dir = args.resume
        restarted = resume_dir is None and args.out and restart_count() > 0
        if restarted and (Path(args.out) / "last").is_dir():
            resume_dir = args.out  # torchrun restarted the workers: continue the run
        common: dict[str, Any] = {
            "stop_after": args.stop_after,
            "quiet": quiet,
            "info": info,
            "started": started,
        }
        if resume_dir is not None:
            extra = []
            if args.epochs is not None:
                extra += [f"train.epochs={args.epochs}", "train.total_steps=null"]
            if args.max_minutes is not None:
                extra.append(f"train.max_minutes={args.max_minutes}")
            if args.out is not None and Path(args.out).resolve() != Path(resume_dir).resolve():
                raise UnetkitError(
                    f"--out {args.out} with --resume {resume_dir}: a resumed run continues in "
                    f"its own folder; drop --out"
                )
            requested, explicit = build_config(args)  # refused where it conflicts with the run
            result = fit(
                requested,
                resume_dir,
                overrides=extra + list(args.overrides),
                explicit=explicit,
                resume=True,
                **common,
            )
        else:
            config, explicit = build_config(args)
            result = fit(config, args.out, explicit=explicit, overwrite=args.overwrite, **common)
        per_class = ", ".join(f"{d:.3f}" for d in result.last_dice_per_class)
        scores = f"last per-class Dice [{per_class}]; " if result.score_name == "dice" else ""
        say(
            f"{result.stopped}: {result.epochs} epochs, {result.steps} steps in "
            f"{result.seconds / 60:.1f} min; best val_{result.score_name} "
            f"{result.best_dice:.4f} (epoch {result.best_epoch}); {scores}"
            f"model: {result.run / 'model.safetensors'}"
        )
        if result.stopped in ("interrupted", "paused"):
            say(f"continue with: unetkit train --resume {result.run}")
        if result.stopped == "interrupted":
            return 128 + int(result.signal or 2)  # 130 for SIGINT, 143 for SIGTERM
        return 0
    finally:
        shutdown(info)


__all__ = ["add_parser", "build_config", "run"]
