"""What every lab experiment shares: settings, the result record, data, a tiny training loop.

The lab trains its own small models with the loop here (Adam, a fixed number of steps, no
validation, no checkpoints) so that each experiment is self-contained and reproducible from a
seed; it is not the trainer.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.metrics import dice
from unetkit.precision import resolve_device

log = logging.getLogger("unetkit.lab")

# The real EM images the `spectrum` experiment prefers, relative to the working directory.
DEFAULT_EM_DIRS = ("../shared/data/isbi2012-em", "shared/data/isbi2012-em")


@dataclass(frozen=True)
class LabSettings:
    """How to run an experiment.

    Attributes:
        quick: the small version (well under a minute on one core) that the tests run.
        seed: seed for data, initialisation and training.
        data: a folder of real images (``images/*.png``) for the experiments that use them;
            ``None`` looks for ``../shared/data/isbi2012-em`` and falls back to synthetic data.
        device: where the experiments' training runs (``--device``: ``cpu``, ``auto``,
            ``cuda``, ``cuda:N``); measurements and figures are made on the CPU afterwards.
    """

    quick: bool = False
    seed: int = 0
    data: Path | None = None
    device: str = "cpu"


@dataclass
class ExperimentResult:
    """What an experiment produces: numbers (JSON), a figure, and a Markdown paragraph.

    Attributes:
        name: the experiment's command-line name, e.g. ``"spike"``.
        principles: the design-source principles it tests, e.g. ``("P4",)``.
        headline: one sentence with the main number.
        numbers: JSON-serialisable measurements and the settings that produced them.
        markdown: a short paragraph: what was done, what was found, where it departs from the
            design source.
        figure: a matplotlib figure (saved as ``NAME.png`` by the report writer).
    """

    name: str
    principles: tuple[str, ...]
    headline: str
    numbers: dict[str, Any]
    markdown: str
    figure: Any = field(repr=False, default=None)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _internal_blobs(
    n: int, size: int, spatial_dims: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random ellipsoidal blobs on a noisy, unevenly lit background.

    Returns images float32 ``(n, 1, *S)`` and masks int64 ``(n, *S)`` with ``S = (size,) * d``.
    """
    grids = np.meshgrid(
        *(np.arange(size, dtype=np.float32) for _ in range(spatial_dims)), indexing="ij"
    )
    images = np.empty((n, 1) + (size,) * spatial_dims, dtype=np.float32)
    masks = np.zeros((n,) + (size,) * spatial_dims, dtype=np.int64)
    for i in range(n):
        inside = np.zeros((size,) * spatial_dims, dtype=bool)
        for _ in range(int(rng.integers(2, 6))):
            centre = rng.uniform(0.1 * size, 0.9 * size, spatial_dims)
            radii = rng.uniform(0.06 * size, 0.18 * size, spatial_dims)
            r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
            inside |= r2 <= 1.0
        light = sum(rng.uniform(-0.3, 0.3) * g / size for g in grids)
        image = 0.6 * inside + light + rng.normal(0.0, 0.25, inside.shape)
        images[i, 0] = image.astype(np.float32)
        masks[i] = inside
    return images, masks


def segmentation_data(
    n: int, size: int, spatial_dims: int = 2, seed: int = 0
) -> tuple[Tensor, Tensor, str]:
    """A binary segmentation set of cell-like objects.

    Uses :func:`unetkit.data.synthetic.make_synthetic` when the data layer is installed (masks
    binarised: foreground = any object), else blobs generated here.

    Returns ``images (n, 1, *S)`` float32 (z-scored per image), ``masks (n, *S)`` int64 in
    {0, 1}, and the name of the source.
    """
    rng = np.random.default_rng(seed)
    source = "unetkit.data.synthetic"
    try:
        from unetkit.data.synthetic import make_synthetic

        samples = make_synthetic(n, spatial_dims=spatial_dims, size=size, seed=seed)
        images = np.stack([np.asarray(s.image, dtype=np.float32)[:1] for s in samples])
        masks = np.stack([(np.asarray(s.mask) > 0).astype(np.int64) for s in samples])
        if images.shape[2:] != (size,) * spatial_dims:
            raise ValueError("unexpected synthetic size")
    except (ImportError, AttributeError, TypeError, ValueError):
        source = "lab blobs"
        images, masks = _internal_blobs(n, size, spatial_dims, rng)
    axes = tuple(range(1, images.ndim))
    images = (images - images.mean(axis=axes, keepdims=True)) / (
        images.std(axis=axes, keepdims=True) + 1e-6
    )
    return torch.from_numpy(images), torch.from_numpy(masks), source


def find_em_dir(settings: LabSettings) -> Path | None:
    """The folder of real EM images to use: ``settings.data`` or a default location, or None."""
    if settings.data is not None:
        if not (settings.data / "images").is_dir():
            raise ValueError(f"--data {settings.data}: expected a folder with an images/ subfolder")
        return settings.data
    for candidate in DEFAULT_EM_DIRS:
        path = Path(candidate)
        if (path / "images").is_dir():
            return path
    return None


def train_steps(
    model: nn.Module,
    batch: Callable[[int], tuple[Tensor, Tensor]],
    steps: int,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    lr: float = 1e-3,
    device: str = "cpu",
) -> list[float]:
    """Train ``model`` in place for ``steps`` Adam steps; returns the loss of every step.

    ``batch(step) -> (x, target)`` supplies the data; ``loss_fn(model(x), target)`` the loss.
    The steps run on ``device`` (:func:`unetkit.precision.resolve_device`); the model is back
    on the CPU afterwards, so what an experiment measures next runs where it always did.
    """
    dev = resolve_device(device)
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    for step in range(steps):
        x, target = batch(step)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x.to(dev)), target.to(dev))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.cpu()
    return losses


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy, ``logits (B, K, *S)``, ``target (B, *S)`` int64."""
    return F.cross_entropy(logits, target)


@torch.no_grad()
def mean_foreground_dice(model: nn.Module, images: Tensor, masks: Tensor) -> float:
    """Mean foreground Dice of ``model``'s argmax over ``images (N, 1, *S)`` vs ``masks``."""
    model.eval()
    pred = model(images).argmax(1).numpy()
    scores = [float(dice(p, t, 2)[1]) for p, t in zip(pred, masks.numpy(), strict=True)]
    scores = [s for s in scores if not np.isnan(s)]
    return float(np.mean(scores)) if scores else float("nan")


def batches_from(
    images: Tensor, masks: Tensor, batch_size: int, seed: int
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """A ``batch(step)`` function cycling through random mini-batches of a fixed set."""
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []

    def batch(step: int) -> tuple[Tensor, Tensor]:
        nonlocal order
        if len(order) < batch_size:
            order = torch.randperm(len(images), generator=gen).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        return images[idx], masks[idx]

    return batch


def new_figure(ncols: int, width: float = 5.0, height: float = 4.0) -> tuple[Any, Any]:
    """A matplotlib figure with ``ncols`` axes, drawn off-screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _read_grey(path: Path) -> np.ndarray:
    """A 2D float32 image ``(H, W)`` (first channel), through the data layer when installed."""
    try:
        from unetkit.io.images import read_image
    except ImportError:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("F"), dtype=np.float32)
    return np.asarray(read_image(path), dtype=np.float32)[0]


def image_patches(
    settings: LabSettings, n: int, size: int, seed: int = 0, held_out: bool = False
) -> tuple[Tensor, str]:
    """``n`` z-scored grey patches ``(n, 1, size, size)`` of real EM images, or synthetic ones.

    Real images come from :func:`find_em_dir` (random crops, cycling through the files; with
    ``held_out`` only from the last sixth of the files, else from the rest); when there are none,
    synthetic cell images. Returns the patches and the name of their source.
    """
    folder = find_em_dir(settings)
    if folder is None:
        images, _, source = segmentation_data(n, size, 2, seed + (7919 if held_out else 0))
        return images, source
    files = sorted(
        p for p in (folder / "images").iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff")
    )
    if not files:
        raise ValueError(f"{folder / 'images'}: no PNG or TIFF images found")
    cut = len(files) - max(1, len(files) // 6) if len(files) > 1 else len(files)
    files = files[cut:] if held_out and len(files) > 1 else files[:cut]
    rng = np.random.default_rng(seed)
    cache: dict[Path, np.ndarray] = {}
    patches = np.empty((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        path = files[i % len(files)]
        if path not in cache:
            cache[path] = _read_grey(path)
        image = cache[path]
        h, w = image.shape
        if h < size or w < size:
            raise ValueError(f"{path}: image {h}x{w} is smaller than the {size}x{size} patches")
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        patch = image[top : top + size, left : left + size]
        patches[i, 0] = (patch - patch.mean()) / (patch.std() + 1e-6)
    return torch.from_numpy(patches), str(folder)
