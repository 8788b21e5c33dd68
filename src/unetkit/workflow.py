"""One training run from start to finish, the same for Python and for ``unetkit train``.

:func:`fit` is the whole run: build the config -> check the run folder -> read the data ->
choose the recipe -> build the model and train (:func:`unetkit.train.trainer.train`) ->
calibrate the best model for int8. ``unetkit train`` parses its arguments and calls it; a
Python caller gets the same run folder::

    from unetkit import fit
    from unetkit.config import RunConfig, DataConfig

    result = fit(RunConfig(data=DataConfig(path="data/cells")), "runs/cells",
                 overrides=["train.max_minutes=10"])

This module sits above ``train/`` and ``infer/`` (the int8 calibration is inference code), so
that ``train/`` never imports ``infer/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from unetkit.config import RunConfig, load_run_config, run_config_from_dict
from unetkit.configtools import apply_overrides, load_yaml, parse_override, to_dict
from unetkit.errors import UnetkitError
from unetkit.precision import resolve_device
from unetkit.run_steps import (
    Echo,
    add_int8_calibration,
    choose_recipe,
    prepare_for_task,
    tune_instances,
)
from unetkit.train.distributed import DistInfo, barrier, broadcast_object
from unetkit.train.lock import check_unlocked
from unetkit.train.preflight import (
    adopt,
    check_resume_checkpoint,
    open_new_run,
    open_resume,
    preflight,
)
from unetkit.train.prepare import needs_new_spacing, spacing_line
from unetkit.train.recipe import (
    with_declaration,
)
from unetkit.train.resume_check import (
    check_data_relocation,
    check_resume_options,
    data_fingerprint,
)
from unetkit.train.runfolder import check_new_run_folder, check_writable, read_marker
from unetkit.train.trainer import TrainResult, train

#: Budget of a run on the built-in synthetic data when neither epochs nor minutes are given.
SYNTHETIC_MINUTES = 2.0



def flat_keys(data: Any, prefix: str = "") -> set[str]:
    """Dotted keys of the leaves of nested plain data (``{"train": {"lr": 1}}`` -> ``train.lr``)."""
    if isinstance(data, Mapping):
        keys: set[str] = set()
        for k, v in data.items():
            keys |= flat_keys(v, f"{prefix}.{k}" if prefix else str(k))
        return keys
    return {prefix}


def _flat_values(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat_values(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def resolve_config(
    config: RunConfig | str | os.PathLike[str] | None, overrides: Sequence[str] = ()
) -> tuple[RunConfig, set[str]]:
    """The requested config (before the recipe) and the dotted keys the caller set.

    ``config``: a :class:`RunConfig` (keys that differ from the defaults count as set), a YAML
    file (its keys count as set) or ``None`` (the defaults); then ``key=value`` overrides.
    """
    base: dict[str, Any] = to_dict(RunConfig())
    explicit: set[str] = set()
    source = "config"
    if isinstance(config, RunConfig):
        data = to_dict(config)
        defaults = _flat_values(base)
        explicit |= {k for k, v in _flat_values(data).items() if defaults.get(k, object()) != v}
        base = data
    elif config is not None:
        if not Path(config).is_file():
            raise UnetkitError(f"--config: {config}: no such file")
        data = load_yaml(str(config))
        from unetkit.config import _merge

        base = _merge(base, data)
        explicit |= flat_keys(data)
        source = str(config)
    for text in overrides:
        path, _ = parse_override(text)
        explicit.add(".".join(path))
    return run_config_from_dict(apply_overrides(base, list(overrides)), source), explicit


def with_run_defaults(config: RunConfig, explicit: set[str]) -> RunConfig:
    """Synthetic data without epochs or minutes gets :data:`SYNTHETIC_MINUTES`; a budget
    without epochs plans its epochs (``train.auto_epochs``)."""
    t = config.train
    if config.data.path is None and not {"train.max_minutes", "train.epochs"} & explicit:
        t = dataclasses.replace(t, max_minutes=SYNTHETIC_MINUTES)
    if "train.epochs" not in explicit and t.max_minutes is not None:
        t = dataclasses.replace(t, auto_epochs=True)
    return dataclasses.replace(config, train=t)


def fit(
    config: RunConfig | str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    overrides: Sequence[str] = (),
    explicit: Iterable[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    quiet: bool = False,
    echo: Echo = print,
    info: DistInfo | None = None,
    started: float | None = None,
    init_from: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a U-Net and write the run folder ``out``, as ``unetkit train`` does.

    Args:
        config: a :class:`~unetkit.config.RunConfig`, a YAML file, or ``None`` for the
            defaults (built-in synthetic data). Settings the caller did not set (see
            :func:`resolve_config`) are chosen by the recipe from the data and the budget.
        out: the run folder to create (default ``runs/<time>``); with ``resume``, the run to
            continue: its own ``config.yaml`` is used, and ``config`` (with ``explicit``), if
            given, only says what the caller asked for: a setting that differs from the stored
            run is refused unless it may change mid-run (:mod:`unetkit.train.resume_check`), and
            ``data.path`` may point at the same data moved elsewhere.
        overrides: ``key=value`` strings with the config.yaml names (``train.lr=0.001``).
        explicit: the dotted keys the caller set, when the caller knows better than
            :func:`resolve_config` (the CLI passes its own).
        resume: continue ``out`` from its newest good checkpoint.
        overwrite: replace the unetkit run already in ``out``: only what its marker lists is
            deleted, after the new run passed its checks; a folder with other files is refused.
        stop_after: pause after this epoch (continue later with ``resume``).
        quiet: no output; ``echo`` receives every line otherwise (rank 0 only).
        info: the process group (default: one process); ``started``: ``time.monotonic()`` at
            the start of the command, so a budget counts the setup.
        init_from: a trained model (file or run folder) to fine-tune from; the same as
            ``train.init_from`` (:mod:`unetkit.train.finetune`).

    Returns:
        How the run ended (:class:`~unetkit.train.trainer.TrainResult`); ``model.safetensors``
        in ``out`` holds the best model, int8-calibrated unless ``train.int8_calibration`` is
        off or the run was paused or interrupted.
    """
    info = info or DistInfo()
    started = time.monotonic() if started is None else started
    say: Echo = echo if (info.is_main and not quiet) else (lambda _m: None)
    if resume and overwrite:
        raise UnetkitError("--resume and --overwrite: choose one (continue or replace)")
    with contextlib.ExitStack() as held:  # the run folder's lock, held until the run ends
        if resume:
            # 1. the stored config (options that conflict with it are refused)  2. the folder
            if out is None:
                raise UnetkitError("--resume: give the run folder to continue")
            run_dir = Path(out)
            if not (run_dir / "config.yaml").is_file():
                raise UnetkitError(f"--resume: {run_dir}: no config.yaml; is it a unetkit run?")
            check_writable(run_dir, "--resume")
            held.enter_context(open_resume(run_dir, is_main=info.is_main, say=say))
            requested, keys = None, set()
            if config is not None:
                requested, found = resolve_config(config, ())
                keys = set(explicit) if explicit is not None else found
            run_config, marker_extra = _resume_config(run_dir, requested, keys, overrides)
            resolve_device(run_config.train.device)
            # 3. read the data  4. every check before the folder changes
            prepared = prepare_for_task(run_config)
            preflight(run_config, prepared)
            adopt(run_dir, info.is_main, marker_extra)
            say(f"resuming {run_dir}")
        else:
            # 1. build the config  2. check the run folder (nothing is written yet)
            run_config, found = resolve_config(config, overrides)
            if init_from is not None:
                t = dataclasses.replace(run_config.train, init_from=str(init_from))
                run_config, found = dataclasses.replace(run_config, train=t), found | {
                    "train.init_from"
                }
            if run_config.task not in ("segment", "restore", "diffusion"):
                raise UnetkitError(
                    f"task={run_config.task}: not available in this version; use task=segment"
                )
            keys = set(explicit) if explicit is not None else found
            resolve_device(run_config.train.device)  # a GPU that is not there: refused first
            run_dir = Path(out) if out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
            run_dir = Path(str(broadcast_object(info, str(run_dir))))
            check_new_run_folder(run_dir, overwrite=overwrite)  # every rank: all stop together
            check_unlocked(run_dir, "--out")
            if run_config.train.tracking:
                from unetkit.train.tracking import check_tracking

                check_tracking(run_config, run_dir)
            run_config = with_run_defaults(run_config, keys)
            run_config = with_declaration(run_config, keys)  # the data folder's dataset.yaml
            init, fixed = None, keys
            if run_config.train.init_from:  # fine-tuning: the trained model's architecture
                from unetkit.train import finetune

                run_config, fixed, init = finetune.start_finetune(run_config, keys)
            # 3. read the data and choose the recipe from it
            prepared = prepare_for_task(run_config)
            if init is not None:
                finetune.check_data_fits(init, prepared.spatial_dims, prepared.in_channels)
            run_config, lines = choose_recipe(run_config, prepared, fixed, info, say)
            renormalise = run_config.data.normalization != prepared.normalization["mode"]
            respace = needs_new_spacing(prepared, run_config.data.target_spacing)
            if renormalise or respace:
                # the fingerprint chose another normalisation (CT) or spacing: read again
                prepared = prepare_for_task(run_config)
            if getattr(prepared, "resampled", 0):
                lines.append(spacing_line(prepared))
            if init is not None:
                run_config, more = finetune.finish_finetune(
                    run_config, init, keys, distributed=info.distributed
                )
                lines += more
            run_config = _resolved_data_path(run_config)
            # 4. memory and a first training step, then the folder (lock, marker, old run)
            preflight(run_config, prepared)
            held.enter_context(
                open_new_run(
                    run_dir,
                    overwrite=overwrite,
                    is_main=info.is_main,
                    say=say,
                    extra=_data_marker(run_config),
                )
            )
            barrier(info)
            for line in lines:
                say(line)
            say("config:\n" + run_config.to_yaml().rstrip())
            say(f"run folder: {run_dir}")
        # 5. build the model and train
        result, run_config = train(
            run_config,
            prepared,
            run_dir,
            info,
            resume=resume,
            stop_after=stop_after,
            quiet=quiet,
            echo=echo,
            started=started,
        )
        # 6. tune the instance post-processing on the validation images (instance target)
        if info.is_main and result.signal is None and prepared.instance_spec is not None:
            tune_instances(run_dir / "model.safetensors", prepared, echo=say)
        # 7. calibrate the best model for int8
        if (
            info.is_main
            and run_config.train.int8_calibration
            and run_config.task == "segment"  # the int8 check compares label maps
            and result.signal is None
            and result.stopped != "paused"
        ):
            add_int8_calibration(run_dir / "model.safetensors", prepared, echo=say)
        if info.is_main and result.signal is None:  # report.html; a failure only warns
            from unetkit.report import write_run_report

            write_run_report(run_dir, prepared, echo=say)
        barrier(info)
    return result


def _resolved_data_path(config: RunConfig) -> RunConfig:
    """The run stores its data folder as an absolute path, so it resumes from anywhere."""
    if config.data.path is None or (config.task == "diffusion" and config.data.path == "digits"):
        return config  # the built-in data (digits: a name, not a folder)
    resolved = str(Path(config.data.path).resolve())
    return dataclasses.replace(config, data=dataclasses.replace(config.data, path=resolved))


def _data_marker(config: RunConfig) -> dict[str, Any]:
    """The marker's record of the data: its folder and a fingerprint of its files."""
    path = config.data.path
    if config.task == "diffusion" and path == "digits":  # built in
        return {"data_path": path, "data_fingerprint": None}
    return {"data_path": path, "data_fingerprint": data_fingerprint(path) if path else None}


def _resume_config(
    run_dir: Path, requested: RunConfig | None, explicit: set[str], overrides: Sequence[str]
) -> tuple[RunConfig, dict[str, Any]]:
    """The stored run's config for a resume, after refusing requested settings that conflict
    with it (:mod:`unetkit.train.resume_check`); ``data.path`` may relocate the data when the
    new folder holds the same files. Also the data entries for an older run's marker."""
    stored = load_run_config(run_dir / "config.yaml")
    if requested is not None:
        check_resume_options(run_dir, stored, requested, explicit)
    marker = read_marker(run_dir) or {}
    given = requested.data.path if requested is not None and "data.path" in explicit else None
    data_path = check_data_relocation(
        run_dir, stored.data.path, given, marker.get("data_fingerprint")
    )
    config = load_run_config(run_dir / "config.yaml", list(overrides))
    raw = load_yaml(str(run_dir / "config.yaml"))
    stored_data = raw.get("data") if isinstance(raw, Mapping) else None
    if not isinstance(stored_data, Mapping) or "instance_target" not in stored_data:
        # a run from before instance targets trained on the class masks: keep it so
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, instance_target="none")
        )
    if data_path is not None:
        config = _resolved_data_path(
            dataclasses.replace(config, data=dataclasses.replace(config.data, path=data_path))
        )
    check_resume_checkpoint(run_dir, config)
    return config, {} if marker else _data_marker(config)


__all__ = ["SYNTHETIC_MINUTES", "add_int8_calibration", "fit", "resolve_config"]
