"""``unetkit train``: train a U-Net on a dataset folder, or on built-in synthetic data.

With no options it trains on synthetic cells within two minutes. With ``--data DIR
--max-minutes M`` and nothing else, the recipe (patch, batch, widths, depth, loss,
augmentation, normalisation, schedule) is chosen from the data and the budget. Works unchanged
under ``torchrun --nproc-per-node N -m unetkit train ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from unetkit.configtools import apply_overrides, parse_override, to_dict
from unetkit.errors import UnetkitError

SYNTHETIC_MINUTES = 2.0


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


def _flatten(data: Any, prefix: str = "") -> set[str]:
    if isinstance(data, dict):
        keys = set()
        for k, v in data.items():
            keys |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return keys
    return {prefix}


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
    from unetkit.config import RunConfig, run_config_from_dict
    from unetkit.configtools import load_yaml
    from unetkit.model import preset_config

    base: dict[str, Any] = to_dict(RunConfig())
    explicit: set[str] = set()
    if args.config:
        if not Path(args.config).is_file():
            raise UnetkitError(f"--config: {args.config}: no such file")
        data = load_yaml(args.config)
        from unetkit.config import _merge

        base = _merge(base, data)
        explicit |= _flatten(data)
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


def small_image_note(samples: Any, patch_size: Any) -> str | None:
    """A note when training images are smaller than the patch along some axis (they are
    padded, not refused); ``None`` otherwise."""
    if not patch_size:
        return None
    small = [
        s.stem
        for s in samples
        if any(n < p for n, p in zip(s.image.shape[1:], patch_size, strict=False))
    ]
    if not small:
        return None
    names = ", ".join(small[:3]) + (f" and {len(small) - 3} more" if len(small) > 3 else "")
    return (
        f"{len(small)} training image(s) smaller than the patch size {list(patch_size)} "
        f"({names}); their patches are padded"
    )


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
    from unetkit.train.distributed import (
        barrier,
        broadcast_object,
        init_from_env,
        restart_count,
        shutdown,
    )
    from unetkit.train.lock import check_unlocked
    from unetkit.train.preflight import adopt, open_new_run, open_resume, preflight
    from unetkit.train.prepare import prepare_data
    from unetkit.train.recipe import apply_recipe, flip_axes_note, summarize_data
    from unetkit.train.runfolder import check_new_run_folder, check_writable
    from unetkit.train.trainer import train

    started = time.monotonic() - process_age()  # --max-minutes counts from the command's start
    _check_positive(args)
    info = init_from_env()
    quiet = args.quiet
    say = print if (info.is_main and not quiet) else (lambda *_a, **_k: None)
    stack = contextlib.ExitStack()
    try:
        if args.resume is not None and args.overwrite:
            raise UnetkitError("--resume and --overwrite: choose one (continue or replace)")
        resume_dir = args.resume
        restarted = resume_dir is None and args.out and restart_count() > 0
        if restarted and (Path(args.out) / "last").is_dir():
            resume_dir = args.out  # torchrun restarted the workers: continue the run
        if resume_dir is not None:
            run_dir = Path(resume_dir)
            if not (run_dir / "config.yaml").is_file():
                raise UnetkitError(f"--resume: {run_dir}: no config.yaml; is it a unetkit run?")
            check_writable(run_dir, "--resume")
            # guard: lock, then every check before the folder changes (train/preflight.py)
            with open_resume(run_dir, is_main=info.is_main, say=say):
                config, extra_marker = _resume_config(args, run_dir)
                prepared = prepare_data(config.data, seed=config.train.seed)
                preflight(config, prepared)
                adopt(run_dir, info.is_main, extra_marker)
                say(f"resuming {run_dir}")
                result, config = train(
                    config,
                    prepared,
                    run_dir,
                    info,
                    resume=True,
                    stop_after=args.stop_after,
                    quiet=quiet,
                    started=started,
                )
        else:
            config, explicit = build_config(args)
            out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
            out = Path(str(broadcast_object(info, str(out))))
            check_new_run_folder(out, overwrite=args.overwrite)  # every rank: all stop together
            check_unlocked(out, "--out")
            if (
                config.data.path is None
                and "train.max_minutes" not in explicit
                and ("train.epochs" not in explicit)
            ):
                config = dataclasses.replace(
                    config, train=dataclasses.replace(config.train, max_minutes=SYNTHETIC_MINUTES)
                )
            if "train.epochs" not in explicit and config.train.max_minutes is not None:
                config = dataclasses.replace(
                    config, train=dataclasses.replace(config.train, auto_epochs=True)
                )
            prepared = prepare_data(config.data, seed=config.train.seed)
            for note in prepared.notes:
                say(f"note: {note}")
            summary = summarize_data(prepared.raw_train, prepared.num_classes)
            config, chosen = apply_recipe(config, summary, explicit)
            note = small_image_note(prepared.raw_train, config.data.patch_size)
            if note:
                say(f"note: {note}")
            config = _resolved_data_path(config)
            preflight(config, prepared)  # guard: memory, first step; nothing written before
            opened = open_new_run(
                out,
                overwrite=args.overwrite,
                is_main=info.is_main,
                say=say,
                extra=_data_marker(config),
            )
            stack.enter_context(opened)  # lock held until the run ends
            barrier(info)
            say(
                f"data: {prepared.source}: {len(prepared.train)} train / {len(prepared.val)} "
                f"validation images, {prepared.in_channels} channel(s), "
                f"{prepared.num_classes} classes, median size {list(summary.median_shape)}"
            )
            if chosen:
                say(f"recipe: chose {', '.join(sorted(chosen))}; {flip_axes_note(summary)}")
            gb = config.train.batch_size * info.world_size
            say(
                f"processes: {info.world_size} ({info.backend or 'single'}); batch "
                f"{config.train.batch_size} per process, global batch {gb}"
            )
            say("config:\n" + config.to_yaml().rstrip())
            say(f"run folder: {out}")
            result, config = train(
                config,
                prepared,
                out,
                info,
                stop_after=args.stop_after,
                quiet=quiet,
                started=started,
            )
        per_class = ", ".join(f"{d:.3f}" for d in result.last_dice_per_class)
        say(
            f"{result.stopped}: {result.epochs} epochs, {result.steps} steps in "
            f"{result.seconds / 60:.1f} min; best val_dice {result.best_dice:.4f} "
            f"(epoch {result.best_epoch}); last per-class Dice [{per_class}]; "
            f"model: {result.run / 'model.safetensors'}"
        )
        if result.stopped in ("interrupted", "paused"):
            say(f"continue with: unetkit train --resume {result.run}")
        if result.stopped == "interrupted":
            return 128 + int(result.signal or 2)  # 130 for SIGINT, 143 for SIGTERM
        return 0
    finally:
        stack.close()
        shutdown(info)


# -- guard hooks (helper modules: train/preflight.py, train/resume_check.py) -------------------


def _resolved_data_path(config: Any) -> Any:
    """The run stores its data folder as an absolute path, so it resumes from anywhere."""
    if config.data.path is None:
        return config
    resolved = str(Path(config.data.path).resolve())
    return dataclasses.replace(config, data=dataclasses.replace(config.data, path=resolved))


def _data_marker(config: Any) -> dict[str, Any]:
    from unetkit.train.resume_check import data_fingerprint

    path = config.data.path
    return {"data_path": path, "data_fingerprint": data_fingerprint(path) if path else None}


def _resume_config(args: argparse.Namespace, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The stored run's config for ``--resume``, after refusing options that conflict with it
    (:mod:`unetkit.train.resume_check`); also the data entries for the run's marker."""
    from unetkit.config import load_run_config
    from unetkit.train.preflight import check_resume_checkpoint
    from unetkit.train.resume_check import check_data_relocation, check_resume_options
    from unetkit.train.runfolder import read_marker

    if args.out is not None and Path(args.out).resolve() != run_dir.resolve():
        raise UnetkitError(
            f"--out {args.out} with --resume {run_dir}: a resumed run continues in its own "
            f"folder; drop --out"
        )
    stored = load_run_config(run_dir / "config.yaml")
    requested, explicit = build_config(args)
    check_resume_options(run_dir, stored, requested, explicit)
    marker = read_marker(run_dir) or {}
    data_path = check_data_relocation(
        run_dir, stored.data.path, args.data, marker.get("data_fingerprint")
    )
    extra = []
    if args.epochs is not None:
        extra += [f"train.epochs={args.epochs}", "train.total_steps=null"]
    if args.max_minutes is not None:
        extra.append(f"train.max_minutes={args.max_minutes}")
    config = load_run_config(run_dir / "config.yaml", extra + list(args.overrides))
    if data_path is not None:
        config = _resolved_data_path(
            dataclasses.replace(config, data=dataclasses.replace(config.data, path=data_path))
        )
    check_resume_checkpoint(run_dir, config)
    return config, _data_marker(config) if not marker else {}


__all__ = ["add_parser", "build_config", "run"]
