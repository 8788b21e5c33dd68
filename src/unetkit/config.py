"""Run configuration: ``RunConfig(model, data, train)`` as frozen dataclasses, YAML in and out.

Why this module exists: it holds what a *training run* needs beyond the network (data and
optimisation), and the run's YAML file. The network's own config is
:mod:`unetkit.model.config` (so that ``model/`` needs nothing else); the generic dataclass <->
dict/YAML machinery both use is :mod:`unetkit.configtools`.

A run folder's ``config.yaml`` is ``dump_yaml(run_config)``; :func:`load_run_config` reads it
back (every key checked, errors name the dotted key), and ``key=value`` overrides use the same
dotted names (``train.lr=0.001``, ``model.widths=[16,32,64]``, ``data.patch_size=[128,128]``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from unetkit.configtools import (
    ConfigValueError,
    apply_overrides,
    dump_yaml,
    from_dict,
    load_yaml,
    to_dict,
)
from unetkit.data.augment import AugmentConfig
from unetkit.diffusion.options import DiffusionConfig
from unetkit.model import UNetConfig
from unetkit.precision import Precision
from unetkit.tasks.options import RestoreConfig

Normalization = Literal["per_image", "dataset"]
Optimizer = Literal["adamw", "sgd"]
Schedule = Literal["poly", "cosine", "constant"]
LossName = Literal["ce", "dice", "dice_ce", "focal", "weighted_ce"]
ClassWeighting = Literal["none", "balanced", "sqrt"]
Flips = Literal["all", "last_axis"]
Task = Literal["segment", "restore", "diffusion"]
InstanceTarget = Literal["auto", "none", "boundary", "contour"]


def _positive(name: str, value: float | int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")


def _check_device(spec: str) -> None:
    """The spelling of a device (whether it exists is checked where it is used)."""
    text = str(spec).strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return
    if text.startswith("cuda:") and text[5:].isdigit():
        return
    raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {spec!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how patches are drawn.

    Attributes:
        path: dataset folder with ``images/`` and ``masks/``; ``None`` uses the built-in
            synthetic dataset (``synthetic_*`` fields).
        num_classes: number of classes ``K`` (labels ``0..K-1``); ``None`` infers it.
        ignore_index: a label excluded from loss and metrics (e.g. CamVid's void 0), or ``None``.
        class_names: one name per class, or ``None``.
        spatial_dims: 1, 2 or 3; ``None`` infers it from the files (the synthetic dataset is
            then 2D). Also the dimensionality of the synthetic dataset (older configs called
            that ``synthetic_dims``; they still load).
        val_fraction: share of the images held out for validation (seeded split, at least 1).
        split_seed: seed of the train/validation split.
        patch_size: training patch, one size per spatial axis; ``None`` chooses from the data.
        foreground_share: share of patches centred on a foreground pixel.
        flips: ``all`` flips along every axis (``augment.p_flip`` each) and rotates by 90°
            (``augment.p_rot90``); ``last_axis`` only mirrors left-right, for images with an up
            and a down (street scenes).
        normalization: ``per_image`` z-score, or ``dataset`` (per-channel mean/std of the
            training images, after clipping to ``clip_percentiles``).
        clip_percentiles: ``[low, high]`` percentiles for ``dataset`` normalisation, or ``None``.
        augment: augmentation probabilities and strengths.
        synthetic_count: images in the synthetic dataset.
        synthetic_size: side length of a synthetic image.
        sampling: how foreground-centred patches pick their centre: ``foreground`` (any
            labelled pixel, so classes are seen in proportion to their area) or
            ``class_aware`` (a class drawn uniformly among the foreground classes the image
            holds, then a pixel of it, so rare classes are seen often).
        instance_target: what the network learns so that touching objects can be separated
            (``unetkit predict --instances``). ``boundary``: the three-class target background
            / interior / touching border (:mod:`unetkit.instances.targets`), from
            ``instances/`` or, without it, from connected components of the masks, with the
            paper's border weight map on the interiors (``train.border_w0``, 0 turns it off);
            the model's plain class map stays the dataset's own (binary masks only); ``contour``:
            the same, every object's rim the border. ``none``: the masks as they are. ``auto``
            (default): ``contour`` with ``instances/`` and binary masks, else ``none``.
        target_spacing: spacing per axis that volumes are resampled to (the fingerprint's).
    """

    path: str | None = None
    num_classes: int | None = None
    ignore_index: int | None = None
    class_names: tuple[str, ...] | None = None
    spatial_dims: int | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    patch_size: tuple[int, ...] | None = None
    foreground_share: float = 0.33
    flips: Flips = "all"
    normalization: Normalization = "per_image"
    clip_percentiles: tuple[float, float] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic_count: int = 40
    synthetic_size: int = 128
    sampling: Literal["foreground", "class_aware"] = "foreground"
    instance_target: InstanceTarget = "auto"
    target_spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.target_spacing is not None:
            spacing = tuple(float(v) for v in self.target_spacing)
            object.__setattr__(self, "target_spacing", spacing)
            if not spacing or not all(math.isfinite(v) and v > 0 for v in spacing):
                raise ValueError(
                    f"target_spacing: expected one positive number per spatial axis, e.g. "
                    f"[50, 4.6, 4.6], got {list(self.target_spacing)}"
                )
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.patch_size is not None:
            object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
            if not self.patch_size or any(p < 8 for p in self.patch_size):
                raise ValueError(f"patch_size: expected sizes of at least 8, got {self.patch_size}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2, got {self.num_classes}")
        if self.spatial_dims is not None and self.spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims: expected 1, 2 or 3, got {self.spatial_dims}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a share in (0, 1), got {self.val_fraction}")
        if not 0.0 <= self.foreground_share <= 1.0:
            raise ValueError(
                f"foreground_share: expected a share in [0, 1], got {self.foreground_share}"
            )
        if self.synthetic_count < 2:
            raise ValueError(f"synthetic_count: expected at least 2, got {self.synthetic_count}")
        if self.synthetic_size < 8:
            raise ValueError(f"synthetic_size: expected at least 8, got {self.synthetic_size}")
        if (
            self.class_names is not None
            and self.num_classes is not None
            and len(self.class_names) != self.num_classes
        ):
            raise ValueError(
                f"class_names: expected {self.num_classes} names (num_classes), "
                f"got {len(self.class_names)}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise: schedule, loss, precision, time budget, checkpoints.

    Attributes:
        epochs: passes of ``steps_per_epoch`` optimiser steps; with ``max_minutes`` and
            ``auto_epochs`` the trainer sizes it from a measured step time.
        steps_per_epoch: optimiser steps per epoch; ``None``: enough batches to see every
            training image about once (at least 10).
        total_steps: the planned number of optimiser steps, when it is not ``epochs *
            steps_per_epoch`` (a time-budget run records its final plan here).
        batch_size: patches per step **per process** (the global batch is this times the number
            of processes).
        max_minutes: wall-clock budget for the whole run; the run stops cleanly (checkpoint,
            best model) when it is spent. ``None`` for no limit.
        auto_epochs: with ``max_minutes``, choose ``epochs`` so the schedule ends inside the
            budget (set when the command line gives no ``--epochs``).
        optimizer: ``adamw`` or ``sgd`` (Nesterov momentum ``momentum``).
        lr: peak learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        momentum: SGD momentum.
        ema_decay: segmentation: validate and save an exponential moving average of the weights
            with this decay (:mod:`unetkit.train.ema`); 0 (default) keeps the weights as trained.
        schedule: after warm-up, ``poly`` (``(1 - t)**0.9``), ``cosine`` or ``constant``.
        warmup_fraction: share of all steps spent ramping the learning rate up linearly.
        grad_clip: largest global gradient norm, or ``None``.
        loss: ``ce``, ``dice``, ``dice_ce``, ``focal`` or ``weighted_ce`` (the paper's border
            weight map; instances from ``instances/`` or connected components).
        class_weighting: cross-entropy class weights, ``balanced`` 1 / frequency, ``sqrt`` its root.
        border_w0, border_sigma: the paper's border weight map parameters (``weighted_ce``).
        deep_supervision_weights: loss weight per deep-supervision output (needs
            ``model.deep_supervision``); ``None`` = ``1/2**i``.
        precision: ``bf16`` autocast, ``fp32``, or ``auto``: this run's training step is timed
            in both (a few steps on a throwaway copy) and the faster is kept, bf16 only when it
            takes under 0.9x the fp32 time (:mod:`unetkit.precision`). The run says which it
            chose, and its ``config.yaml`` records the choice (so a resume keeps it).
        channels_last: use the channels-last memory layout (2D/3D; ignored for 1D).
        seed: seed of the weights, patches and augmentation.
        deterministic: deterministic algorithms and one thread order, so reruns and resumes
            give identical weights.
        checkpoint_every: write ``last/`` every this many epochs.
        keep_checkpoints: keep this many earlier checkpoints under ``checkpoints/``.
        overlays: number of validation images drawn with their predictions.
        sync_batchnorm: synchronise batch-norm statistics across processes.
        threads: CPU threads per process; 0 measures 1 thread against all cores and takes the
            faster (deterministic runs use 1; under torchrun, ``OMP_NUM_THREADS``).
        int8_calibration: at the end of the run, calibrate the best model for int8 inference
            on training patches and store the ranges, with the int8/fp32 agreement measured
            on the validation images, in ``model.safetensors`` (a few seconds).
        device: ``auto`` (a CUDA GPU when present, else the CPU), ``cpu``, ``cuda`` or
            ``cuda:N`` (:func:`unetkit.precision.resolve_device`); under ``torchrun`` each
            process takes GPU ``LOCAL_RANK``. May change on resume (the model file is the same).
        init_from: a trained model file or run folder to start from (fine-tuning,
            :mod:`unetkit.train.finetune`); ``None`` trains from scratch.
        freeze_encoder_steps: with ``init_from``, keep the encoder's weights fixed for this
            many first optimiser steps (0: never).
        tracking: also log the metrics.csv records (and the config, overlays) to
            ``tensorboard`` and/or ``mlflow``, locally (:mod:`unetkit.train.tracking`).
        tracking_uri: MLflow tracking URI, a local ``file:`` URI or folder (default
            ``<run>/mlruns``).
        prefetch: the next batch built in a background thread: ``auto`` (on for GPU training
            only, as measured in :mod:`unetkit.train.prefetch`), ``on`` or ``off``.
    """

    epochs: int = 30
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    batch_size: int = 8
    max_minutes: float | None = None
    auto_epochs: bool = False
    optimizer: Optimizer = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.99
    ema_decay: float = 0.0
    schedule: Schedule = "poly"
    warmup_fraction: float = 0.05
    grad_clip: float | None = 5.0
    loss: LossName = "dice_ce"
    class_weighting: ClassWeighting = "none"
    border_w0: float = 10.0
    border_sigma: float = 5.0
    deep_supervision_weights: tuple[float, ...] | None = None
    precision: Precision = "fp32"
    channels_last: bool = True
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    overlays: int = 4
    sync_batchnorm: bool = False
    threads: int = 0
    int8_calibration: bool = True
    device: str = "auto"
    init_from: str | None = None
    freeze_encoder_steps: int = 0
    tracking: tuple[str, ...] = ()
    tracking_uri: str | None = None
    prefetch: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        if self.freeze_encoder_steps < 0:
            raise ValueError(
                f"freeze_encoder_steps: expected 0 or a positive integer, got "
                f"{self.freeze_encoder_steps}"
            )
        object.__setattr__(self, "tracking", tuple(self.tracking))
        unknown = [t for t in self.tracking if t not in ("tensorboard", "mlflow")]
        if unknown:
            raise ValueError(
                f"tracking: expected a list of tensorboard, mlflow; got {', '.join(unknown)}"
            )
        if self.threads < 0:
            raise ValueError(f"threads: expected 0 (auto) or a positive number, got {self.threads}")
        for name in ("epochs", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.total_steps is not None and self.total_steps < 1:
            raise ValueError(
                f"total_steps: expected a positive integer or null, got {self.total_steps!r}"
            )
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(
                f"steps_per_epoch: expected a positive integer or null, got "
                f"{self.steps_per_epoch!r}"
            )
        if self.keep_checkpoints < 0 or self.overlays < 0:
            raise ValueError("keep_checkpoints, overlays: expected non-negative integers")
        _positive("max_minutes", self.max_minutes, allow_none=True)
        _check_device(self.device)
        _positive("lr", self.lr)
        _positive("grad_clip", self.grad_clip, allow_none=True)
        _positive("border_sigma", self.border_sigma)
        if self.weight_decay < 0 or self.border_w0 < 0:
            raise ValueError("weight_decay, border_w0: expected non-negative numbers")
        for name in ("momentum", "ema_decay", "warmup_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1), got {getattr(self, name)}")
        if self.deep_supervision_weights is not None:
            object.__setattr__(
                self, "deep_supervision_weights", tuple(self.deep_supervision_weights)
            )


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs: ``model``, ``data`` and ``train`` sections.

    Attributes:
        model, data, train: the network, the data and the optimisation.
        task: what the network learns: ``segment`` (a class per pixel, the default),
            ``restore`` (image-to-image regression: denoising, deconvolution) or ``diffusion``
            (a denoiser conditioned on the noise level, for generation). One ``UNet`` and one
            trainer serve all three.
        restore: options of ``task=restore`` (losses, blind-spot masking); ignored otherwise.
        diffusion: options of ``task=diffusion`` (noise schedule, eps/v, EMA, label dropout);
            ignored otherwise.
    """

    model: UNetConfig = field(default_factory=UNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: Task = "segment"
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def with_sections(self, **sections: Any) -> RunConfig:
        """A copy with whole sections replaced (``model=...``, ``data=...``, ``train=...``)."""
        return replace(self, **sections)

    def to_yaml(self) -> str:
        """The config as YAML text (what ``config.yaml`` in a run folder holds)."""
        return dump_yaml(self)


def _upgrade(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Plain run-config data with older keys mapped to today's names.

    ``data.synthetic_dims`` (the synthetic dataset's dimensionality, once held apart from
    ``data.spatial_dims``) becomes ``data.spatial_dims`` when the run uses synthetic data and
    is dropped when it reads a folder (where it never had an effect).
    """
    section = data.get("data")
    if not isinstance(section, Mapping) or "synthetic_dims" not in section:
        return data
    section = dict(section)
    dims = section.pop("synthetic_dims")
    if section.get("path") is None:
        section["spatial_dims"] = dims
    return {**data, "data": section}


def run_config_from_dict(data: Mapping[str, Any], source: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from plain data; errors name ``source`` and the dotted key."""
    try:
        return from_dict(RunConfig, _upgrade(data))
    except ConfigValueError as exc:
        raise ConfigValueError(f"{source}: {exc}") from None


def load_run_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    base: RunConfig | None = None,
) -> RunConfig:
    """``base`` (default :class:`RunConfig()`), updated by a YAML file, then by overrides."""
    data: dict[str, Any] = to_dict(base or RunConfig())
    source = "config"
    if path is not None:
        source = str(path)
        data = _merge(data, load_yaml(str(path)))
    data = apply_overrides(data, list(overrides))
    return run_config_from_dict(data, source if not overrides else f"{source} + overrides")


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


__all__ = [
    "AugmentConfig",
    "DataConfig",
    "DiffusionConfig",
    "RestoreConfig",
    "RunConfig",
    "Task",
    "TrainConfig",
    "UNetConfig",
    "load_run_config",
    "run_config_from_dict",
]
