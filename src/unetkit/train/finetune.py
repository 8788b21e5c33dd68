"""Fine-tuning: start a run from a trained model (``unetkit train --init-from MODEL``).

The run takes the trained model's architecture (``model.*`` settings the recipe would choose are
taken from it instead); ``spatial_dims`` and ``in_channels`` must match the data, and any other
architecture setting given explicitly must match the model, otherwise one line names what
differs. Classes may differ: the output heads (``head``, ``deep_heads``) are then re-initialised
and the run says which tensors were. Unless ``train.lr`` is given, the recipe chooses the
fine-tuning learning rate as :data:`FINETUNE_LR_FACTOR` times its from-scratch choice (measured:
the from-scratch peak with the usual warm-up beat a tenth of it); ``train.freeze_encoder_steps``
keeps the encoder's weights fixed for a first phase.

Weights are read through :mod:`unetkit.modelfile` (safetensors, checksums, never a pickle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetkit.config import RunConfig
from unetkit.errors import UnetkitError
from unetkit.model import UNet, UNetConfig

#: Fine-tuning learning rate = this x the recipe's from-scratch learning rate. Measured on DSB
#: (benchmarks/finetune.py --steps 100: fluorescence -> 4 stained/brightfield images): 0.1x
#: reached validation Dice 0.27, 1x 0.71 in the same 100 steps; the new kinds of image need the
#: features to move, and the warm-up already protects them in the first steps.
FINETUNE_LR_FACTOR = 1.0

#: ``UNetConfig`` fields that shape the weights; a fine-tuned run must keep them.
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "spatial_dims",
    "in_channels",
    "widths",
    "kernel_size",
    "convs_per_block",
    "padding",
    "down",
    "up",
    "fusion",
    "norm",
    "norm_placement",
    "act",
    "block",
    "encoder_blocks",
)


@dataclass(frozen=True)
class InitModel:
    """A trained model to start from: its file, config and tensors.

    Attributes:
        path: the resolved model file.
        config: its ``UNetConfig``.
        tensors: its state dict (CPU tensors).
    """

    path: Path
    config: UNetConfig
    tensors: Mapping[str, torch.Tensor]


def read_init_model(path: str | Path) -> InitModel:
    """Read a unetkit model file or run folder; a corrupt file, a pickle or a foreign
    safetensors file is one line naming ``--init-from``."""
    from unetkit.modelfile import load, resolve_model_path

    try:
        resolved = resolve_model_path(path)
        model = load(resolved)
    except UnetkitError as exc:
        raise UnetkitError(f"--init-from {path}: {exc}") from None
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return InitModel(resolved.resolve(), model.config, tensors)


def adopt_architecture(config: RunConfig, init: InitModel, explicit: set[str]) -> set[str]:
    """The ``model.*`` keys to hold fixed (so the recipe keeps the trained architecture), after
    refusing explicit settings that differ from the trained model."""
    differs = []
    for name in ARCHITECTURE_FIELDS:
        key = f"model.{name}"
        mine, theirs = getattr(config.model, name), getattr(init.config, name)
        if key in explicit and name not in ("spatial_dims", "in_channels") and mine != theirs:
            differs.append(f"{name} {_show(mine)} here vs {_show(theirs)} in the model")
    if differs:
        raise UnetkitError(
            f"--init-from {init.path}: architecture differs: {'; '.join(differs)}; drop those "
            f"settings (a fine-tuned run keeps the trained architecture)"
        )
    return {f"model.{name}" for name in ARCHITECTURE_FIELDS}


def with_init_architecture(config: RunConfig, init: InitModel) -> RunConfig:
    """``config`` whose model has the trained architecture (``out_channels`` stays)."""
    fields = {name: getattr(init.config, name) for name in ARCHITECTURE_FIELDS}
    fields.pop("spatial_dims")
    fields.pop("in_channels")
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **fields))


def check_data_fits(init: InitModel, spatial_dims: int, in_channels: int) -> None:
    """Refuse data of another dimensionality or channel count than the trained model's."""
    differs = []
    if spatial_dims != init.config.spatial_dims:
        differs.append(f"spatial dims {spatial_dims}D data vs {init.config.spatial_dims}D model")
    if in_channels != init.config.in_channels:
        differs.append(
            f"channels {in_channels} in the images vs {init.config.in_channels} in the model"
        )
    if differs:
        raise UnetkitError(
            f"--init-from {init.path}: does not fit the data: {'; '.join(differs)}; start from "
            f"a model trained on images like these, or train without --init-from"
        )


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def reinitialised(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of ``model``'s tensors that ``tensors`` cannot fill (absent or another shape)."""
    own = model.state_dict()
    return [
        k for k, v in own.items() if k not in tensors or tuple(tensors[k].shape) != tuple(v.shape)
    ]


def load_init_weights(model: UNet, init: InitModel | str | Path) -> list[str]:
    """Copy the trained tensors into ``model`` where names and shapes match; returns the
    names left as initialised (a new head). Anything outside the heads must match."""
    if not isinstance(init, InitModel):
        init = read_init_model(init)
    fresh = reinitialised(model, init.tensors)
    foreign = [k for k in fresh if not k.startswith(("head.", "deep_heads."))]
    if foreign:
        raise UnetkitError(
            f"--init-from {init.path}: weights do not fit this architecture ({len(foreign)} "
            f"tensor(s) outside the output head differ, e.g. {', '.join(foreign[:3])})"
        )
    own = model.state_dict()
    kept = {k: v for k, v in init.tensors.items() if k in own and k not in fresh}
    model.load_state_dict(kept, strict=False)
    return fresh


def init_note(init: InitModel, model: UNet) -> str:
    """One line: what was loaded and which tensors were re-initialised."""
    fresh = reinitialised(model, init.tensors)
    total = len(model.state_dict())
    if not fresh:
        return f"init: all {total} tensors from {init.path} (same classes)"
    return (
        f"init: {total - len(fresh)} of {total} tensors from {init.path}; re-initialised "
        f"{', '.join(fresh)} ({init.config.out_channels} -> {model.config.out_channels} output "
        f"channels)"
    )


def set_encoder_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (``requires_grad=False``) or release the encoder's parameters. A frozen
    parameter gets no gradient, so the optimiser leaves it (and its weight decay) alone."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        return
    for p in encoder.parameters():
        p.requires_grad_(not frozen)


__all__ = [
    "ARCHITECTURE_FIELDS",
    "FINETUNE_LR_FACTOR",
    "InitModel",
    "adopt_architecture",
    "check_data_fits",
    "init_note",
    "load_init_weights",
    "read_init_model",
    "set_encoder_frozen",
    "with_init_architecture",
]


def start_finetune(config: RunConfig, explicit: set[str]) -> tuple[RunConfig, set[str], InitModel]:
    """Before the recipe: read ``train.init_from``, take its architecture, and return the
    config, the keys the recipe must leave alone, and the model to start from."""
    assert config.train.init_from is not None
    init = read_init_model(config.train.init_from)
    held = explicit | adopt_architecture(config, init, explicit)
    config = with_init_architecture(config, init)
    train = dataclasses.replace(config.train, init_from=str(init.path))
    return dataclasses.replace(config, train=train), held, init


def finish_finetune(
    config: RunConfig, init: InitModel, explicit: set[str], *, distributed: bool = False
) -> tuple[RunConfig, list[str]]:
    """After the recipe: the fine-tuning learning rate (unless ``train.lr`` was given) and the
    lines that say what the run starts from."""
    if distributed and config.train.freeze_encoder_steps:
        raise UnetkitError(
            "train.freeze_encoder_steps: not available under torchrun (the gradient reducer "
            "expects every parameter to get a gradient); use 0"
        )
    lines = [init_note(init, UNet(dataclasses.replace(config.model, init="default")))]
    if "train.lr" not in explicit:
        lr = config.train.lr * FINETUNE_LR_FACTOR
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=lr))
        lines.append(f"recipe: fine-tuning lr {lr:.3g} ({FINETUNE_LR_FACTOR:g} x from scratch)")
    if config.train.freeze_encoder_steps:
        lines.append(f"encoder frozen for the first {config.train.freeze_encoder_steps} steps")
    return config, lines
