"""Loading a trained denoiser and generating images with it (what ``unetkit generate`` runs).

A diffusion run's ``model.safetensors`` holds the EMA weights (the default); ``weights="raw"``
reads the un-averaged weights of its last checkpoint (``RUN/last/model.safetensors``).
Images come back in the training data's units (digits: 0..16), from the scale stored in the
model file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.diffusion.sampling import Sampler, sample
from unetkit.diffusion.schedule import NoiseSchedule
from unetkit.errors import UnetkitError
from unetkit.model import UNet
from unetkit.modelfile import load_with_metadata, resolve_model_path


@dataclass
class Denoiser:
    """A trained diffusion model: the network, its noise schedule and what its file says.

    ``info`` is the model file's ``diffusion`` metadata (timesteps, schedule, prediction,
    ``num_labels``, ``label_names``, ``scale``, ``image_size``).
    """

    model: UNet
    schedule: NoiseSchedule
    info: dict[str, Any]

    @property
    def num_labels(self) -> int:
        return int(self.info.get("num_labels") or 0)

    @property
    def image_shape(self) -> tuple[int, ...]:
        size = self.info.get("image_size") or [16, 16]
        return (self.model.config.in_channels, *(int(s) for s in size))


def load_denoiser(path: str | Path, *, weights: str = "ema", option: str = "--model") -> Denoiser:
    """The denoiser in a model file or run folder; one-line :class:`UnetkitError` otherwise."""
    file = resolve_model_path(path)
    if weights == "raw":
        raw = file.parent / "last" / "model.safetensors"
        if not raw.is_file():
            raise UnetkitError(
                f"{option} {path}: --weights raw needs the run's last checkpoint ({raw}); give "
                f"the run folder, or use the EMA weights (the default)"
            )
        file = raw
    model, metadata = load_with_metadata(file)
    task = metadata.get("task", "segment")
    info = metadata.get("diffusion")
    if task != "diffusion" or not isinstance(info, dict) or not model.config.time_conditioning:
        raise UnetkitError(
            f"{option} {path}: is a {task} model, not a diffusion model; generate images with a "
            f"model trained with `unetkit train task=diffusion`"
        )
    schedule = NoiseSchedule.make(str(info["schedule"]), int(info["timesteps"]))
    return Denoiser(model.eval(), schedule, info)


def check_request(d: Denoiser, label: int | None, guidance: float) -> None:
    """Refuse a class or a guidance scale the model cannot honour, in one line."""
    if label is not None:
        if d.num_labels == 0:
            raise UnetkitError(
                f"--class {label}: the model is unconditional (trained without classes); "
                f"leave --class out"
            )
        if not 0 <= label < d.num_labels:
            raise UnetkitError(
                f"--class {label}: out of range; the model knows classes 0..{d.num_labels - 1}"
            )
    if guidance != 1.0 and d.num_labels == 0:
        raise UnetkitError(
            f"--guidance {guidance}: the model is unconditional (trained without classes), so "
            f"there is nothing to guide towards; leave --guidance out"
        )
    if not math.isfinite(guidance) or guidance < 0:
        raise UnetkitError(f"--guidance {guidance}: expected a number >= 0 (1 = no guidance)")


def labels_for(d: Denoiser, n: int, label: int | None) -> torch.Tensor | None:
    """``(n,)`` classes: ``label`` for all, or the classes in turn; ``None`` if unconditional."""
    if d.num_labels == 0:
        return None
    if label is not None:
        return torch.full((n,), label, dtype=torch.long)
    return torch.arange(n, dtype=torch.long) % d.num_labels


def generate(
    d: Denoiser,
    n: int,
    *,
    sampler: Sampler = "ddim",
    steps: int | None = None,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``n`` images ``(n, C, *S)`` float32 in [-1, 1]; batch ``k`` uses seed ``seed + k``."""
    out = []
    for k, start in enumerate(range(0, n, batch_size)):
        b = min(batch_size, n - start)
        x = sample(
            d.model,
            d.schedule,
            (b, *d.image_shape),
            prediction=str(d.info["prediction"]),
            sampler=sampler,
            steps=steps,
            labels=None if labels is None else labels[start : start + b],
            guidance=guidance,
            null_label=d.num_labels,
            seed=seed + k,
            progress=progress,
        )
        out.append(x.cpu().numpy().astype(np.float32))
    return np.concatenate(out)


def to_units(d: Denoiser, images: np.ndarray) -> np.ndarray:
    """[-1, 1] -> the training data's units (``scale = (low, high)``)."""
    low, high = (float(v) for v in d.info.get("scale", (-1.0, 1.0)))
    return ((images + 1) / 2 * (high - low) + low).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] -> uint8 0..255 (clipped)."""
    return np.clip(np.round((images + 1) * 127.5), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images into one ``(C, rows (H + pad) - pad, ...)`` image."""
    n, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.zeros((c, rows * (h + pad) - pad, cols * (w + pad) - pad), images.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        out[:, r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = images[i]
    return out
