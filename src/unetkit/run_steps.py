"""The steps of a training run that :func:`unetkit.workflow.fit` strings together.

Reading the data as the task needs it, choosing the recipe (with the lines a run prints),
and what happens to the best model once training ends: the instance post-processing tuned on
the validation images, and the int8 calibration. :mod:`unetkit.workflow` keeps the order and
the run folder's safety; these are the steps themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unetkit.config import RunConfig
from unetkit.train.distributed import DistInfo
from unetkit.train.fingerprint import dataset_fingerprint
from unetkit.train.prepare import PreparedData, prepare_data
from unetkit.train.recipe import apply_recipe, flip_axes_note, geometry_plan, summarize_data

Echo = Callable[[str], None]


def prepare_for_task(config: RunConfig) -> PreparedData:
    """The run's data, as its task reads it (restore: images with targets, or images alone)."""
    if config.task == "restore":
        from unetkit.tasks.restore_data import prepare_restore

        return prepare_restore(config)
    if config.task == "diffusion":
        from unetkit.tasks.diffusion_data import prepare_diffusion

        return prepare_diffusion(config)
    return prepare_data(config.data, seed=config.train.seed)


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


def choose_recipe(
    config: RunConfig, prepared: PreparedData, explicit: set[str], info: DistInfo, say: Echo
) -> tuple[RunConfig, list[str]]:
    """The config with the recipe's choices for what the caller left open (data notes are
    said now), and the summary lines to show once the run folder is ready."""
    for note in prepared.notes:
        say(f"note: {note}")
    if config.task == "diffusion":
        from unetkit.tasks.diffusion_data import DiffusionPrepared, apply_diffusion_recipe

        if not isinstance(prepared, DiffusionPrepared):
            raise TypeError("task=diffusion: the data was not prepared for diffusion")
        config, picked = apply_diffusion_recipe(config, prepared, explicit)
        return config, [
            f"data: {prepared.source}: {len(prepared.train)} train / {len(prepared.val)} "
            f"held-out images, {prepared.in_channels} channel(s), "
            f"{prepared.num_labels or 'no'} classes",
            f"recipe (diffusion): chose {', '.join(picked) or 'nothing'}",
        ]
    summary = summarize_data(
        prepared.raw_train,
        prepared.num_classes,
        instance_target=prepared.instance_spec is not None,
    )
    fp = dataset_fingerprint(prepared.source, prepared.raw_train)
    at = getattr(prepared, "target_spacing", None)
    if fp is not None and at is not None:  # data.target_spacing given: the images are at it
        fp = dataclasses.replace(fp, spacings=tuple(None if s is None else at for s in fp.spacings))
    geometry = geometry_plan(
        summary,
        fp,
        config.train.max_minutes,
        len(config.model.widths) if "model.widths" in explicit else None,  # the levels given
    )
    config, chosen = apply_recipe(config, summary, explicit, geometry)
    if config.task == "restore":
        from unetkit.tasks.restore_recipe import apply_restore_recipe

        config, more = apply_restore_recipe(config, summary, explicit)
        chosen |= more
    note = small_image_note(prepared.raw_train, config.data.patch_size)
    if note:
        say(f"note: {note}")
    lines = [
        f"data: {prepared.source}: {len(prepared.train)} train / {len(prepared.val)} "
        f"validation images, {prepared.in_channels} channel(s), "
        + (
            f"{prepared.num_classes} classes"
            if config.task == "segment"
            else f"{prepared.num_classes} output channel(s)"
        )
        + f", median size {list(summary.median_shape)}"
    ]
    if chosen:
        polarity = (
            "; polarity inversion (objects are bright in some images, dark in others)"
            if summary.mixed_polarity and "data.augment" in chosen
            else ""
        )
        lines.append(
            f"recipe: chose {', '.join(sorted(chosen))}; {flip_axes_note(summary)}{polarity}"
        )
    if geometry is not None:
        lines += [f"fingerprint: {why}" for why in geometry.reasons]
    gb = config.train.batch_size * info.world_size
    lines.append(
        f"processes: {info.world_size} ({info.backend or 'single'}); batch "
        f"{config.train.batch_size} per process, global batch {gb}"
    )
    return config, lines


def tune_instances(path: Path, prepared: PreparedData, *, echo: Echo = print) -> None:
    """Pick the instance post-processing parameters on the validation images and store them
    in the saved best model (:func:`unetkit.infer.instances.tune_model_file`)."""
    from unetkit.infer.instances import tune_model_file

    val = [s for s in prepared.raw_val if s.instances is not None]
    result = tune_model_file(path, [s.image for s in val], [s.instances for s in val])
    if result is None:
        return
    p = result.params
    echo(
        f"instances: post-processing tuned on {result.images} validation images in "
        f"{result.seconds:.0f} s: DSB score {result.score:.3f} (seed {p.seed_threshold:g}, "
        f"foreground {p.foreground_threshold:g}, min seed {p.min_seed_size}, min size "
        f"{p.min_size})"
    )


def add_int8_calibration(path: Path, prepared: PreparedData, *, echo: Echo = print) -> None:
    """Calibrate the saved best model for int8 and store the result in its metadata.

    Ranges come from training patches, the agreement from the validation images. A model the
    int8 path does not cover is left as it is, with a note.
    """
    from unetkit.infer.calibration import agreement_of, default_precision_note, int8_calibration
    from unetkit.infer.int8 import Int8Unsupported
    from unetkit.modelfile import load_with_metadata, save

    if not path.is_file():
        return
    model, metadata = load_with_metadata(path)
    patch = metadata.get("patch_size") or [128] * model.config.spatial_dims
    try:
        entry = int8_calibration(
            model,
            [s.image for s in prepared.train],
            [s.image for s in prepared.val],
            patch=patch,
        )
    except Int8Unsupported as exc:
        echo(f"int8: not calibrated ({str(exc).removeprefix('int8: ')}); prediction uses fp32")
        return
    save(model, path, metadata={**metadata, "int8": entry})
    agreement = agreement_of(entry)
    if agreement is None:
        echo("int8: calibrated; no validation images to measure agreement, prediction uses fp32")
        return
    echo(
        f"int8: calibrated on {entry['patches']} training patches; label maps agree with fp32 at "
        f"foreground Dice {agreement:.4f} on {entry['agreement']['images']} validation images; "
        f"{default_precision_note(entry)}"
    )
    if entry.get("fp32_layers"):
        echo(
            f"int8: kept in fp32: {', '.join(entry['fp32_layers'])} (all-int8 agreed at "
            f"{entry.get('all_int8_agreement', float('nan')):.4f}; 'unetkit info --model' explains)"
        )


__all__ = [
    "Echo",
    "add_int8_calibration",
    "choose_recipe",
    "prepare_for_task",
    "small_image_note",
    "tune_instances",
]
